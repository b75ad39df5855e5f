"""SQL lives here: each module talks to the database for one area and hands up plain dataclasses."""
