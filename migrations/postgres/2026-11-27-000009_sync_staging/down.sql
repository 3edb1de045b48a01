DROP TABLE defender_sync_staging;
