-- The tag writer asks which machines carry a tag in any case (`domain::tag::same`: a person's
-- `ea:watch` is the mapping's `EA:Watch`), by `lower(tag)`, every round: indexed so that the
-- question stays a lookup on a tenant of 100,000 machines.
CREATE INDEX defender_machine_tags_folded ON defender_machine_tags (lower(tag));
