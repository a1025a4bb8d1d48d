"""The only code that knows SQL: tables, migrations and the queries over them.

One calling convention, told by a function's first parameter:

* `conn: sa.Connection` — a plain (synchronous) function that runs inside a unit of work
  and never commits; callers compose several of these in one function and run it with
  `await db.read(unit)` or `await db.write(unit)` (see `executors` for why units are sync).
* `db: Database` — an async function that is one unit of its own (it runs its own
  `db.read`/`db.write`); callers outside the store (admin CLI, operator facade) use these.

No function takes both, and none opens a transaction on a `conn` it was given. Statements
used on every request are built once at import (`bindparam`), not per call.
The operator uses `operator_facade.OperatorStore` only; migrations have one owner
(see `database.py`).
"""
