"""SQL: SQLite as the embedded database, PostgreSQL for real; all or nothing.

One SQLAlchemy Core metadata (types from the Arrow schema, primary keys,
foreign keys, an index on every foreign key, column comments from the data
dictionary) serves both. Everything from the first CREATE to the registry row
happens in one transaction (DDL is transactional in both), so a load either
lands completely or leaves the database as it was: a killed process, a lost
connection or a constraint error rolls it back.

- PostgreSQL: through ADBC's PostgreSQL driver, which ingests Arrow record
  batches by binary COPY with no per-row Python (measured 1.5x faster than
  CSV COPY through psycopg, and faster than `psql \\copy`; see
  benchmarks/RESULTS.md). SQLAlchemy compiles every statement; tables are
  created bare and get their keys and indexes once the data are in.
- SQLite: executemany of SQLAlchemy's compiled insert, rows zipped from Arrow
  columns, in one transaction; indexes after the data.

The table ``causalsynth_datasets`` records each loaded dataset by the SHA-256
of its manifest: appending a dataset twice is refused, replacing is idempotent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import (
    AddConstraint,
    CreateIndex,
    CreateSchema,
    CreateTable,
    DropTable,
    SetColumnComment,
    SetTableComment,
)

from causalsynth.errors import CausalsynthError, ConfigError
from causalsynth.sinks import TableSpec

REGISTRY = "causalsynth_datasets"
IF_EXISTS = ("fail", "replace", "append")
DIALECTS = ("sqlite", "postgresql")
# Driver names a PostgreSQL URL may carry; the load itself always goes through ADBC.
POSTGRES_DRIVERS = ("psycopg2", "psycopg")


class DatabaseError(CausalsynthError):
    """The database cannot be reached or refused the load."""


# The password of user:password@host, and the query parameters that carry one (libpq's names and
# drivers' aliases). Matched on the text, so a URL too malformed to parse is masked as well.
# Everything from the user's colon to the URL's last "@": drivers differ in which characters end a
# password ("/", "?", "#", even "@"), so the mask errs towards hiding more.
_USER_PASSWORD = re.compile(r"(://[^:/@?#]*:).*@")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd|pass|sslpassword)=)[^&#]*", re.IGNORECASE)


def masked(url: str) -> str:
    """``url`` with every password in it shown as ``***``."""
    return _QUERY_PASSWORD.sub(r"\1***", _USER_PASSWORD.sub(r"\1***@", url))


def _secrets(url: str) -> list[str]:
    """What ``masked`` hides in ``url``, and each piece of it between "@"s (a driver that ends a password
    at its first "@" names the rest as the host), longest first."""
    hidden = [m.group(0)[len(m.group(1)):-1] for m in _USER_PASSWORD.finditer(url)]
    hidden += [m.group(0)[len(m.group(1)):] for m in _QUERY_PASSWORD.finditer(url)]
    return sorted({p for h in hidden for p in (h, *h.split("@")) if len(p) > 1}, key=len, reverse=True)


def _cause(exc: BaseException, url: str) -> str:
    """The first informative line of a driver error, without any secret of ``url`` in it."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    for prefix in ("IO: ", "[libpq] ", "Failed to connect: ", "connection failed: "):  # ADBC's wrapping
        text = text.removeprefix(prefix)
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _failed(url: str, what: str, exc: BaseException) -> DatabaseError:
    """The one-line error of a database operation ``what`` that failed with the driver's ``exc``."""
    return DatabaseError(f"--db {masked(url)}: {what}: {_cause(exc, url)}")


def _backend(url: str) -> str:
    """"sqlite" or "postgresql", or a clear error for any other URL."""
    try:
        parsed = sa.make_url(url)
        parsed.port  # noqa: B018 - SQLAlchemy parses the port only when it is read
    except sa.exc.ArgumentError:
        raise ConfigError(f"--db {masked(url)!r}: not a database URL; expected e.g. sqlite:///file.db or "
                          f"postgresql://user@host/db") from None
    except ValueError:
        raise ConfigError(f"--db: the port in {masked(url)} is not a number; expected e.g. "
                          f"postgresql://user@host:5432/db") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite" and (parsed.host or parsed.username or parsed.password or parsed.port):
        raise ConfigError(f"--db {masked(url)}: a SQLite URL names a file and nothing else; expected "
                          f"sqlite:///relative/file.db or sqlite:////absolute/file.db")
    if backend not in DIALECTS:
        raise ConfigError(f"--db {masked(url)}: unsupported database {backend!r}; supported: {', '.join(DIALECTS)}")
    if backend == "postgresql" and parsed.get_driver_name() not in POSTGRES_DRIVERS:
        raise ConfigError(f"--db {masked(url)}: unsupported PostgreSQL driver {parsed.get_driver_name()!r}; "
                          f"use postgresql:// or postgresql+psycopg:// (loaded through ADBC either way)")
    return backend


def check_options(url: str, schema: str | None = None, if_exists: str = "fail") -> str:
    """Refuse a bad ``--db`` URL, ``--schema`` or ``--if-exists`` before any work; the backend's name."""
    if if_exists not in IF_EXISTS:
        raise ConfigError(f"--if-exists {if_exists}: allowed values are {', '.join(IF_EXISTS)}")
    backend = _backend(url)
    if schema is not None and not schema.strip():
        raise ConfigError("--schema: empty; give a schema name, or leave --schema out for the database's default")
    if backend == "sqlite" and schema is not None:
        raise ConfigError(f"--schema {schema}: SQLite has no schemas; use a separate database file")
    return backend


def create_engine(url: str) -> Engine:
    """A SQLite engine whose transactions cover DDL too."""
    engine = sa.create_engine(sa.make_url(url))
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
        raise _failed(url, "cannot connect", exc) from None


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
        columns = [sa.Column(f.name, sql_type(f.type), nullable=f.nullable, comment=spec.descriptions.get(f.name))
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


class _SqliteSession:
    """SQLite through SQLAlchemy (pysqlite), one explicit transaction."""

    def __init__(self, url: str):
        self.url = url
        database = sa.make_url(url).database
        # A file this session creates is removed again if the load fails: a failure writes nothing.
        self.new_file = (Path(database).absolute() if database and database != ":memory:"
                         and not Path(database).exists() else None)
        self.engine = create_engine(url)
        self.conn = connect(self.engine, url)
        self.dialect = self.conn.dialect
        self.tx = self.conn.begin()

    def execute(self, statement) -> list[tuple]:
        result = self.conn.execute(statement)
        return list(result) if result.returns_rows else []

    def has_table(self, name: str, schema: str | None) -> bool:
        return sa.inspect(self.conn).has_table(name, schema=schema)

    def ingest(self, table: sa.Table, batch: pa.RecordBatch) -> None:
        insert = table.insert().compile(dialect=self.dialect, column_keys=batch.schema.names)
        columns = []
        for name in insert.positiontup:
            column = batch.column(name)
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            elif pa.types.is_timestamp(column.type):
                column = pc.strftime(column, format="%Y-%m-%d %H:%M:%S")  # SQLAlchemy's SQLite layout
            columns.append(column.to_pylist())
        self.conn.exec_driver_sql(str(insert), list(zip(*columns)))

    def commit(self) -> None:
        self.tx.commit()

    def rollback(self) -> None:
        if self.tx.is_active:
            self.tx.rollback()

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self.engine.dispose()

    def discard(self) -> None:
        """After a rollback: remove the database file if this session created it."""
        if self.new_file is not None:
            for path in (self.new_file, self.new_file.with_name(self.new_file.name + "-journal")):
                path.unlink(missing_ok=True)


class _PostgresSession:
    """PostgreSQL through ADBC: SQLAlchemy compiles the statements, ADBC runs them and ingests
    Arrow record batches by binary COPY, all in one transaction (ADBC does not autocommit)."""

    errors: tuple = ()

    def __init__(self, url: str):
        from sqlalchemy.dialects import postgresql

        try:
            import adbc_driver_postgresql.dbapi as adbc
        except ImportError:
            raise DatabaseError(f"--db {masked(url)}: database driver not installed; for PostgreSQL "
                                f"install it: pip install adbc-driver-postgresql") from None
        self.url, self.dialect = url, postgresql.dialect()
        _PostgresSession.errors = (adbc.Error,)
        uri = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self.conn = adbc.connect(uri)
        except adbc.Error as exc:
            raise _failed(url, "cannot connect", exc) from None

    def execute(self, statement) -> list[tuple]:
        if not isinstance(statement, str):
            statement = str(statement.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))
        with self.conn.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def has_table(self, name: str, schema: str | None) -> bool:
        quote = self.dialect.identifier_preparer.quote
        target = f"{quote(schema)}.{quote(name)}" if schema else quote(name)
        return self.execute(sa.select(sa.func.to_regclass(target).isnot(None)))[0][0]

    def ingest(self, table: sa.Table, batch: pa.RecordBatch) -> None:
        data = pa.table([c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns],
                        names=batch.schema.names)
        with self.conn.cursor() as cursor:
            cursor.adbc_ingest(table.name, data, mode="append", db_schema_name=table.schema)

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


class SqlSink:
    """Loads a dataset's tables into a database in one transaction.

    ``manifest_sha256``, when known up front (loading an existing dataset),
    lets an ``append`` of an already-loaded dataset be refused before any
    data moves.
    """

    in_order = True  # one transaction, tables appended part after part

    def __init__(self, url: str, *, schema: str | None = None, if_exists: str = "fail",
                 manifest_sha256: str | None = None) -> None:
        backend = check_options(url, schema, if_exists)
        self.url, self.schema, self.if_exists = url, schema, if_exists
        self.manifest_sha256 = manifest_sha256
        self.session = _SqliteSession(url) if backend == "sqlite" else _PostgresSession(url)
        self.dialect = backend
        self.rows: dict[str, int] = {}
        self.open_ = True

    # --- protocol -----------------------------------------------------------------
    def open(self, tables: list[TableSpec]) -> None:
        run = self.session.execute
        self.specs = {t.name: t for t in tables}
        self.metadata = build_metadata(tables, self.schema)
        self.registry = self.metadata.tables[self._qualified(REGISTRY)]
        try:
            if self.schema is not None:
                run(CreateSchema(self.schema, if_not_exists=True))
            if not self.session.has_table(REGISTRY, self.schema):
                self._create(self.registry)
            existing = [t for t in self.specs if self.session.has_table(t, self.schema)]
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
            if existing:  # replace, children first
                for table in reversed(self.metadata.sorted_tables):
                    if table.name in existing:
                        run(DropTable(table))
                run(self.registry.delete())
            if self.dialect == "sqlite":  # no ALTER TABLE ADD CONSTRAINT: keys up front, indexes later
                tables_now = [self.metadata.tables[self._qualified(n)] for n in self.specs]
            else:  # bare tables now (with their comments); keys and indexes once the data are in
                bare = build_metadata(tables, self.schema, constraints=False)
                tables_now = [bare.tables[self._qualified(n)] for n in self.specs]
            for table in tables_now:
                self._create(table)
        except self._errors() as exc:
            raise _failed(self.url, "preparing the tables failed", exc) from None

    def write(self, table: str, batch: pa.RecordBatch, part: int) -> None:
        """Append ``batch`` to ``table`` (a part may come in several batches)."""
        self.rows[table] = self.rows.get(table, 0) + batch.num_rows
        try:
            self.session.ingest(self.metadata.tables[self._qualified(table)], batch)
        except self._errors() as exc:
            raise _failed(self.url, f"loading {table} failed", exc) from None

    def close(self) -> None:
        run = self.session.execute
        try:
            for name in self.specs:
                table = self.metadata.tables[self._qualified(name)]
                if not self.append:
                    if self.dialect == "postgresql":
                        run(AddConstraint(table.primary_key))
                        for fk in table.foreign_key_constraints:
                            run(AddConstraint(fk))
                    for index in table.indexes:
                        run(CreateIndex(index))
                if self.dialect == "postgresql":
                    run(f"ANALYZE {self._quoted(name)}")
        except self._errors() as exc:
            raise _failed(self.url, "constraints failed", exc) from None

    def commit(self, manifest: bytes) -> None:
        import hashlib

        sha = hashlib.sha256(manifest).hexdigest()
        data = json.loads(manifest)
        self._refuse_loaded(sha)
        self.session.execute(self.registry.insert().values(
            manifest_sha256=sha, loaded_at=sa.func.current_timestamp(),
            model=f"{data['model']['name']} {data['model']['version']}", seed=data["seed"],
            n_prs=data["n_prs"], intervention=data["intervention"]["name"],
            row_counts=json.dumps(self.rows)))
        self.session.commit()
        self._release()

    def abort(self) -> None:
        if not self.open_:
            return
        try:
            self.session.rollback()
        except self._errors():
            pass  # the connection is gone: the server rolls the transaction back
        finally:
            self._release()
        if hasattr(self.session, "discard"):
            self.session.discard()

    # --- helpers --------------------------------------------------------------------
    def _errors(self) -> tuple:
        return (sa.exc.DBAPIError, *_PostgresSession.errors)

    def _create(self, table: sa.Table) -> None:
        self.session.execute(CreateTable(table))
        if self.dialect == "postgresql":  # comments are separate statements there
            if table.comment:
                self.session.execute(SetTableComment(table))
            for column in table.columns:
                if column.comment:
                    self.session.execute(SetColumnComment(column))

    def _release(self) -> None:
        if self.open_:
            self.open_ = False
            try:
                self.session.close()
            except self._errors():
                pass

    def _qualified(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else name

    def _quoted(self, name: str) -> str:
        return self.session.dialect.identifier_preparer.format_table(self.metadata.tables[self._qualified(name)])

    def _refuse_loaded(self, sha: str | None) -> None:
        if sha is None:
            return
        found = self.session.execute(sa.select(self.registry.c.loaded_at).where(
            self.registry.c.manifest_sha256 == sha))
        if found:
            raise DatabaseError(f"--db {masked(self.url)}: this dataset (manifest {sha[:12]}…) was already "
                                f"loaded at {found[0][0]}; appending it again would duplicate it "
                                f"(use --if-exists replace to reload)")
