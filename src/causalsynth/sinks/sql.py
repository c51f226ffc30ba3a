"""SQL: SQLite as the embedded database, PostgreSQL for real; all or nothing.

One SQLAlchemy Core metadata (types from the Arrow schema, primary keys,
foreign keys, an index on every foreign key, column comments from the data
dictionary) serves both. Everything from the first CREATE to the registry row
happens in one transaction (DDL is transactional in both), so a load either
lands completely or leaves the database as it was: a killed process, a lost
connection or a constraint error rolls it back.

- PostgreSQL: tables are created bare, filled by COPY (psycopg 3) from CSV
  that pyarrow renders from each record batch in C++, and only then given
  their primary keys, foreign keys and indexes.
- SQLite: executemany of SQLAlchemy's compiled insert, rows zipped from Arrow
  columns, in one transaction; indexes after the data.

The table ``causalsynth_datasets`` records each loaded dataset by the SHA-256
of its manifest: appending a dataset twice is refused, replacing is idempotent.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateSchema, CreateTable

from causalsynth.errors import CausalsynthError, ConfigError
from causalsynth.sinks import TableSpec

REGISTRY = "causalsynth_datasets"
IF_EXISTS = ("fail", "replace", "append")
DIALECTS = ("sqlite", "postgresql")
COPY_CHUNK_ROWS = 65_536  # rows rendered to CSV at a time (measured: 64k beats 16k and 500k)


class DatabaseError(CausalsynthError):
    """The database cannot be reached or refused the load."""


def masked(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


def _cause(exc: BaseException) -> str:
    """The first informative line of a driver error."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    for prefix in ("connection failed: ", "(psycopg.OperationalError) "):
        text = text.removeprefix(prefix)
    return text


def create_engine(url: str) -> Engine:
    """An engine for ``url``, or a one-line error naming the (masked) URL and the cause."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"--db {url!r}: not a database URL; expected e.g. sqlite:///file.db or "
                          f"postgresql+psycopg://user@host/db") from None
    if parsed.get_backend_name() not in DIALECTS:
        raise ConfigError(f"--db {masked(url)}: unsupported database {parsed.get_backend_name()!r}; "
                          f"supported: {', '.join(DIALECTS)}")
    try:
        engine = sa.create_engine(parsed)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise DatabaseError(f"--db {masked(url)}: database driver not installed ({exc}); for PostgreSQL "
                            f"install psycopg: pip install 'psycopg[binary]'") from None
    if engine.dialect.name == "sqlite":
        _sqlite_transactional_ddl(engine)
    return engine


def _sqlite_transactional_ddl(engine: Engine) -> None:
    # pysqlite commits implicitly before DDL; take over transaction control so
    # CREATE/DROP and the inserts share one transaction (SQLAlchemy's recipe).
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("foreign_keys=ON", "synchronous=NORMAL", "temp_store=MEMORY", "cache_size=-262144"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN")


def connect(engine: Engine, url: str) -> Connection:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise DatabaseError(f"--db {masked(url)}: cannot connect: {_cause(exc)}") from None


def sql_type(arrow_type: pa.DataType) -> sa.types.TypeEngine:
    if pa.types.is_dictionary(arrow_type) or pa.types.is_string(arrow_type):
        return sa.Text()
    if pa.types.is_timestamp(arrow_type):
        return sa.DateTime(timezone=arrow_type.tz is not None)
    if pa.types.is_boolean(arrow_type):
        return sa.Boolean()
    if arrow_type == pa.int64():
        return sa.BigInteger()
    if pa.types.is_integer(arrow_type):
        return sa.Integer()
    if arrow_type == pa.float32():
        return sa.Float(precision=24)  # REAL on PostgreSQL: the values are float32
    if pa.types.is_floating(arrow_type):
        return sa.Float(precision=53)
    raise TypeError(f"no SQL type for Arrow type {arrow_type}")


def build_metadata(tables: list[TableSpec], schema: str | None, constraints: bool = True) -> sa.MetaData:
    """The five tables (and the registry); ``constraints=False`` gives the bare tables loaded first."""
    metadata = sa.MetaData(schema=schema)
    for spec in tables:
        columns = [sa.Column(f.name, sql_type(f.type), nullable=False, comment=spec.descriptions.get(f.name))
                   for f in spec.schema]
        extra: list = []
        if constraints:
            extra.append(sa.PrimaryKeyConstraint(spec.key, name=f"pk_{spec.name}"))
            if spec.parent is not None:
                parent, key = spec.parent
                target = f"{schema}.{parent}.{key}" if schema else f"{parent}.{key}"
                extra.append(sa.ForeignKeyConstraint([key], [target], name=f"fk_{spec.name}_{parent}"))
                extra.append(sa.Index(f"ix_{spec.name}_{key}", key))
        sa.Table(spec.name, metadata, *columns, *extra)
    sa.Table(
        REGISTRY, metadata,
        sa.Column("manifest_sha256", sa.String(64), primary_key=True,
                  comment="SHA-256 of the loaded dataset's manifest.json"),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("n_prs", sa.BigInteger, nullable=False),
        sa.Column("intervention", sa.Text, nullable=False),
        sa.Column("row_counts", sa.Text, nullable=False, comment="JSON: rows per table"),
        comment="Datasets loaded into this schema's causalsynth tables",
    )
    return metadata


class SqlSink:
    """Loads a dataset's tables into a database in one transaction.

    ``manifest_sha256``, when known up front (loading an existing dataset),
    lets an ``append`` of an already-loaded dataset be refused before any
    data moves.
    """

    def __init__(self, url: str, *, schema: str | None = None, if_exists: str = "fail",
                 manifest_sha256: str | None = None) -> None:
        if if_exists not in IF_EXISTS:
            raise ConfigError(f"--if-exists {if_exists}: allowed values are {', '.join(IF_EXISTS)}")
        self.url, self.schema, self.if_exists = url, schema, if_exists
        self.manifest_sha256 = manifest_sha256
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite" and schema is not None:
            self.engine.dispose()
            raise ConfigError(f"--schema {schema}: SQLite has no schemas; use a separate database file")
        self.conn = connect(self.engine, url)
        self.tx = None
        self.rows: dict[str, int] = {}

    # --- protocol -----------------------------------------------------------------
    def open(self, tables: list[TableSpec]) -> None:
        self.specs = {t.name: t for t in tables}
        self.metadata = build_metadata(tables, self.schema)
        self.registry = self.metadata.tables[self._qualified(REGISTRY)]
        self.tx = self.conn.begin()
        if self.schema is not None:
            self.conn.execute(CreateSchema(self.schema, if_not_exists=True))
        self.registry.create(self.conn, checkfirst=True)
        inspector = sa.inspect(self.conn)
        existing = [t for t in self.specs if inspector.has_table(t, schema=self.schema)]
        self.append = False
        if existing and self.if_exists == "fail":
            raise DatabaseError(f"--db {masked(self.url)}: tables already exist: {', '.join(existing)}; "
                                f"use --if-exists replace or --if-exists append")
        if existing and self.if_exists == "append":
            if len(existing) != len(self.specs):
                raise DatabaseError(f"--db {masked(self.url)}: cannot append: only some tables exist "
                                    f"({', '.join(existing)})")
            self._refuse_loaded(self.manifest_sha256)
            self.append = True
            return
        if existing:  # replace
            self.metadata.drop_all(self.conn, tables=[self.metadata.tables[self._qualified(t)]
                                                      for t in self.specs], checkfirst=True)
            self.conn.execute(self.registry.delete())
        if self.dialect == "sqlite":  # no ALTER TABLE ADD CONSTRAINT: keys up front, indexes later
            for name in self.specs:
                self.conn.execute(CreateTable(self.metadata.tables[self._qualified(name)]))
        else:  # bare tables now (with their comments); keys and indexes once the data are in
            bare = build_metadata(tables, self.schema, constraints=False)
            bare.create_all(self.conn, tables=[bare.tables[self._qualified(t)] for t in self.specs])

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        self.rows[table] = self.rows.get(table, 0) + batch.num_rows
        try:
            if self.dialect == "postgresql":
                self._copy(table, batch)
            else:
                self._insert(table, batch)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"--db {masked(self.url)}: loading {table} failed: {_cause(exc)}") from None

    def close(self) -> dict[str, Path]:
        try:
            for name in self.specs:
                table = self.metadata.tables[self._qualified(name)]
                if not self.append:
                    if self.dialect == "postgresql":
                        self.conn.execute(AddConstraint(table.primary_key))
                        for fk in table.foreign_key_constraints:
                            self.conn.execute(AddConstraint(fk))
                    for index in table.indexes:
                        self.conn.execute(CreateIndex(index))
                if self.dialect == "postgresql":
                    self.conn.exec_driver_sql(f"ANALYZE {self._quoted(name)}")
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"--db {masked(self.url)}: constraints failed: {_cause(exc)}") from None
        return {}

    def commit(self, manifest: bytes) -> None:
        import hashlib

        sha = hashlib.sha256(manifest).hexdigest()
        data = json.loads(manifest)
        self._refuse_loaded(sha)
        self.conn.execute(self.registry.insert().values(
            manifest_sha256=sha, loaded_at=datetime.now(timezone.utc),
            model=f"{data['model']['name']} {data['model']['version']}", seed=data["seed"],
            n_prs=data["n_prs"], intervention=data["intervention"]["name"],
            row_counts=json.dumps(self.rows)))
        self.tx.commit()
        self.tx = None
        self._release()

    def abort(self) -> None:
        try:
            if self.tx is not None and self.tx.is_active:
                self.tx.rollback()
        except sa.exc.DBAPIError:
            pass  # the connection is gone: the server rolls the transaction back
        finally:
            self.tx = None
            self._release()

    # --- helpers --------------------------------------------------------------------
    def _release(self) -> None:
        try:
            self.conn.close()
        except sa.exc.DBAPIError:
            pass
        self.engine.dispose()

    def _qualified(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else name

    def _quoted(self, name: str) -> str:
        prep = self.conn.dialect.identifier_preparer
        return prep.format_table(self.metadata.tables[self._qualified(name)])

    def _refuse_loaded(self, sha: str | None) -> None:
        if sha is None:
            return
        found = self.conn.execute(sa.select(self.registry.c.loaded_at).where(
            self.registry.c.manifest_sha256 == sha)).first()
        if found is not None:
            raise DatabaseError(f"--db {masked(self.url)}: this dataset (manifest {sha[:12]}…) was already "
                                f"loaded at {found[0]}; appending it again would duplicate it "
                                f"(use --if-exists replace to reload)")

    def _copy(self, table: str, batch: pa.RecordBatch) -> None:
        import psycopg
        from psycopg import sql
        from psycopg.copy import QueuedLibpqWriter

        target = sql.Identifier(self.schema, table) if self.schema else sql.Identifier(table)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            target, sql.SQL(", ").join(sql.Identifier(n) for n in batch.schema.names))
        cursor = self.conn.connection.driver_connection.cursor()
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        try:
            # psycopg sends each chunk from its own thread while pyarrow (which
            # releases the GIL) renders the next: client and server overlap.
            with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
                for offset in range(0, batch.num_rows, COPY_CHUNK_ROWS):
                    buffer = io.BytesIO()
                    pacsv.write_csv(batch.slice(offset, COPY_CHUNK_ROWS), buffer, options)
                    copy.write(buffer.getbuffer())
        except psycopg.Error as exc:  # the raw driver cursor: SQLAlchemy does not wrap its errors
            raise sa.exc.DBAPIError(str(statement), None, exc) from None

    def _insert(self, table: str, batch: pa.RecordBatch) -> None:
        insert = self.metadata.tables[self._qualified(table)].insert().compile(
            dialect=self.conn.dialect, column_keys=batch.schema.names)
        columns = []
        for name in insert.positiontup:
            column = batch.column(name)
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            elif pa.types.is_timestamp(column.type):
                column = pc.strftime(column, format="%Y-%m-%d %H:%M:%S")  # SQLAlchemy's SQLite layout
            columns.append(column.to_pylist())
        self.conn.exec_driver_sql(str(insert), list(zip(*columns)))
