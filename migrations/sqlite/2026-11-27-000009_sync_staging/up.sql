-- The machines a Defender sync has fetched and not yet imported. A sync stages each page of
-- machines here as it arrives instead of holding the whole inventory in memory until the fetch
-- is complete, so its memory does not grow with the tenant; the imported tables still change
-- only once everything was fetched. Emptied when a sync starts and when it ends.
CREATE TABLE defender_sync_staging (
    seq INTEGER PRIMARY KEY NOT NULL, -- the order of arrival; the sync's in-memory lists use it
    machine_id TEXT NOT NULL,
    mac_key TEXT NOT NULL,            -- the first MAC, or ''; with name_key, finds re-imaged duplicates
    name_key TEXT NOT NULL,           -- the DNS name in lower case without a final dot, or ''
    merged_into TEXT NOT NULL,        -- the machine Defender merged this one into, or ''
    record TEXT NOT NULL              -- the fetched machine (JSON)
);
