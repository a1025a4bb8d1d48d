"""The only code that knows SQL: tables, migrations and the queries over them.

One calling convention, told by a function's first parameter:

* `db: Database` — the function is one transaction of its own (it opens and commits it);
  callers outside the store (admin CLI, operator facade) use these.
* `conn: AsyncConnection` — the function runs inside the caller's transaction and never
  commits; handlers compose several of these in one `async with db.transaction()`.

No function takes both, and none opens a transaction on a `conn` it was given.
The operator uses `operator_facade.OperatorStore` only; migrations have one owner
(see `database.py`).
"""
