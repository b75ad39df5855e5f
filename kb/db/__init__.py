"""Everything that talks to PostgreSQL: the engine and embedded server, tables, queue, full text and stores."""
