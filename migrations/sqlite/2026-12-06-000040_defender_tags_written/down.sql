DROP TABLE defender_tag_calls;
DROP TABLE defender_tags_written;
DROP TABLE profile_defender_tags;
