"""The recipes that ship with mvmr (package data: `mvmr recipes list`, `mvmr recipes show NAME`)."""
