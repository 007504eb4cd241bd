"""The call log: a database (SQLite by default, PostgreSQL at scale) fed from Redis by the workers.

    engine      the database URL → a SQLAlchemy engine (SQLite in WAL mode under data_dir by default)
    schema      the tables, in one place
    migrate     Alembic migrations, run on start; a schema newer than the code is refused
    events      what workers and the API append to the Redis event stream (the log's input)
    writer      applies a batch of events to the database in one transaction
    drain       one worker at a time moves events from the stream into the database
    queries     the read side: a call's report, searches, failure groups, dead letters
    prune       retention: old calls deleted in small batches
    importer    calls held in Redis by versions before the database, moved into it

The webhook's answer never waits for the database: the API only appends to the Redis stream, and
deliveries never read it. See the README's "Where calls live".
"""
