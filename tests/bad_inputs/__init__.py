"""Bad input, one test per kind of the catalogue (../shared/notes/reliability.md §2).

Every test here feeds one kind of bad input to a real broker and worker (or to the client)
and asserts one of the outcomes in `table.Outcome`. It also reports what it saw through the
`bad_input` fixture, so that the session ends with the bad-input table (kind, outcome,
reason text), printed and written to `tests/reports/bad-inputs.md`.
"""
