-- PostgreSQL only (its instances learn of each other's commits by LISTEN/NOTIFY). SQLite's
-- data version is `PRAGMA data_version`, read in the process: nothing to add here.
SELECT 1;
