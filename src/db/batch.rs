//! Statements over many rows at once: inserts, upserts, updates and deletes keyed by id. An
//! import writes hundreds of rows per table and transaction; one statement per row costs a round
//! trip each on PostgreSQL, which made a 100,000-machine import take minutes there.
//!
//! SQLite gets the rows as `VALUES (…), (…)` with a placeholder per value. PostgreSQL gets one
//! array per column, unnested into rows (`unnest($1::int8[], $2::text[], …)`): a statement of a
//! few placeholders instead of thousands, which it parsed and bound in about as long as it
//! took to run (issue 23's twelfth round: 1.8 s of the 7.3 s that the endpoints' inserts of a
//! 100,000-machine import cost).

use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, SmallInt, Text};
use diesel::sqlite::Sqlite;
use diesel::{Column, RunQueryDsl};

use super::AnyConnection;

/// One bound value of a row. A column holds values of one kind in every row (an integer or
/// a missing one, a small integer, a boolean, text or missing text), as the `row!`s of one call
/// do: PostgreSQL gets each column as one typed array, and refuses a mix.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Int(i64),
    Small(i16),
    Bool(bool),
    Text(&'a str),
    NullableInt(Option<i64>),
    NullableText(Option<&'a str>),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i16> for Value<'_> {
    fn from(v: i16) -> Self {
        Value::Small(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::NullableInt(v)
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::NullableText(v)
    }
}

/// A row of values: `row![id, name, 0i16]`.
macro_rules! row {
    ($($v:expr),* $(,)?) => { vec![$($crate::db::batch::Value::from($v)),*] };
}
pub(crate) use row;

/// Bound values per statement: under SQLite's limit (32,766) and PostgreSQL's (65,535).
const MAX_BINDS: usize = 30_000;

/// Runs `INSERT … {rows} {tail}` over `rows` (all of one width) in as few statements as the
/// engines' limits on bound values allow; returns the rows affected. `head` (the `INSERT INTO
/// table (columns)`) and `tail` (an `ON CONFLICT` clause, or nothing) are fragments written in
/// the code (`'static`: never text from outside) and hold no parameters of their own.
pub fn execute_values(
    conn: &mut AnyConnection,
    head: &'static str,
    tail: &'static str,
    rows: &[Vec<Value<'_>>],
) -> QueryResult<usize> {
    execute_chunks(conn, rows, |rows, _| Ok(format!("{head} {rows} {tail}")))
}

/// `UPDATE {table} SET {set} FROM ({rows}) AS v WHERE {table}.id = v.column1`, for rows whose
/// first value is the id; `set` names the values `v.column2`, … The ids are listed once more
/// for the index: PostgreSQL's planner joins a few hundred rows of values to a table of any size
/// by reading all of it, and reads only those rows through the primary key for an `IN` list.
pub fn update_by_id(
    conn: &mut AnyConnection,
    table: &'static str,
    set: &'static str,
    rows: &[Vec<Value<'_>>],
) -> QueryResult<usize> {
    execute_chunks(conn, rows, |rows, ids| {
        Ok(format!(
            "UPDATE {table} SET {set} FROM ({rows}) AS v WHERE {table}.id = v.column1 AND {table}.id {}",
            ids()?
        ))
    })
}

/// `DELETE FROM {table} WHERE ({key}, {column}) IN ({rows})`, for rows of two values, the first
/// the id in `key` (listed once more, for the index: see [`update_by_id`]). The columns are the
/// schema's own, so that a renamed column fails to compile rather than to run.
pub fn delete_pairs<K, C>(
    conn: &mut AnyConnection,
    table: &'static str,
    (_, _): (K, C),
    rows: &[Vec<Value<'_>>],
) -> QueryResult<usize>
where
    K: Column,
    C: Column<Table = K::Table>,
{
    let (key, column) = (K::NAME, C::NAME);
    execute_chunks(conn, rows, |rows, ids| {
        Ok(format!("DELETE FROM {table} WHERE {key} {} AND ({key}, {column}) IN ({rows})", ids()?))
    })
}

/// The rows' first values, integer keys. A row without one is a bug of the caller: it fails
/// the statement (and its transaction) rather than being left out quietly.
fn leading_ids(rows: &[Vec<Value<'_>>]) -> QueryResult<Vec<i64>> {
    rows.iter()
        .map(|r| match r.first() {
            Some(Value::Int(id)) => Ok(*id),
            other => Err(misuse(format!("a row keyed by id starts with {other:?}, not an integer id"))),
        })
        .collect()
}

/// A statement the code built wrongly, as the error the query would fail with.
fn misuse(what: String) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(what.into())
}

/// Ids as literals for `IN (…)` (they are integers, never text from outside): PostgreSQL then
/// reads those rows through the key, where it would scan a table joined to a list of values.
pub fn id_list(ids: &[i64]) -> String {
    if ids.is_empty() { "NULL".to_owned() } else { ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ") }
}

/// Runs the statement `sql` writes for each chunk of `rows`, given the chunk as a row source
/// (`VALUES (…), (…)` on SQLite, `SELECT * FROM unnest(…)` on PostgreSQL, whose columns are
/// `column1`, `column2`, … on both) and the test that an id is one of the chunk's first values
/// (`IN (1, 2, …)`, `= ANY($1)`; an error for rows not keyed by an integer id).
fn execute_chunks(
    conn: &mut AnyConnection,
    rows: &[Vec<Value<'_>>],
    sql: impl Fn(&str, &dyn Fn() -> QueryResult<String>) -> QueryResult<String>,
) -> QueryResult<usize> {
    let Some(width) = rows.first().map(Vec::len) else { return Ok(0) };
    if width == 0 || rows.iter().any(|r| r.len() != width) {
        return Err(misuse(format!("the rows of one statement must have one width, the first has {width}")));
    }
    let mut affected = 0;
    for chunk in rows.chunks((MAX_BINDS / width).max(1)) {
        affected += match conn {
            AnyConnection::Sqlite(c) => {
                let sql =
                    sql(&values_list(chunk.len(), width), &|| Ok(format!("IN ({})", id_list(&leading_ids(chunk)?))))?;
                bind_all(diesel::sql_query(sql).into_boxed::<Sqlite>(), chunk).execute(c)?
            }
            AnyConnection::Postgresql(c) => {
                let columns = Columns::of(chunk, width)?;
                // The first array holds the ids, once they are known to be ids.
                let sql = sql(&columns.unnest(), &|| leading_ids(chunk).map(|_| "= ANY($1::int8[])".to_owned()))?;
                columns.bind(diesel::sql_query(sql).into_boxed::<Pg>()).execute(c)?
            }
        };
    }
    Ok(affected)
}

/// `VALUES (?, ?), (?, ?)` for `rows` rows of `width` values.
fn values_list(rows: usize, width: usize) -> String {
    let mut sql = String::with_capacity(8 + rows * (width * 3 + 4));
    sql.push_str("VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            sql.push_str(if c == 0 { "?" } else { ", ?" });
        }
        sql.push(')');
    }
    sql
}

/// The rows' values column by column, one array each, for PostgreSQL.
struct Columns<'a>(Vec<ColumnValues<'a>>);

/// One column's values: integers (nullable or not), small integers, booleans or text (nullable
/// or not). A column holds one of these in every row; anything else is a bug of the caller.
enum ColumnValues<'a> {
    Ints(Vec<Option<i64>>),
    Smalls(Vec<i16>),
    Bools(Vec<bool>),
    Texts(Vec<Option<&'a str>>),
}

impl<'a> Columns<'a> {
    fn of(rows: &[Vec<Value<'a>>], width: usize) -> QueryResult<Self> {
        (0..width)
            .map(|c| {
                let mut column = match rows[0][c] {
                    Value::Int(_) | Value::NullableInt(_) => ColumnValues::Ints(Vec::with_capacity(rows.len())),
                    Value::Small(_) => ColumnValues::Smalls(Vec::with_capacity(rows.len())),
                    Value::Bool(_) => ColumnValues::Bools(Vec::with_capacity(rows.len())),
                    Value::Text(_) | Value::NullableText(_) => ColumnValues::Texts(Vec::with_capacity(rows.len())),
                };
                for row in rows {
                    match (&mut column, row[c]) {
                        (ColumnValues::Ints(v), Value::Int(i)) => v.push(Some(i)),
                        (ColumnValues::Ints(v), Value::NullableInt(i)) => v.push(i),
                        (ColumnValues::Smalls(v), Value::Small(i)) => v.push(i),
                        (ColumnValues::Bools(v), Value::Bool(b)) => v.push(b),
                        (ColumnValues::Texts(v), Value::Text(t)) => v.push(Some(t)),
                        (ColumnValues::Texts(v), Value::NullableText(t)) => v.push(t),
                        (_, other) => {
                            return Err(misuse(format!("column {} holds {other:?} beside {:?}", c + 1, rows[0][c])));
                        }
                    }
                }
                Ok(column)
            })
            .collect::<QueryResult<_>>()
            .map(Columns)
    }

    /// `SELECT * FROM unnest($1::int8[], …) AS v (column1, …)`.
    fn unnest(&self) -> String {
        let arrays: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let kind = match c {
                    ColumnValues::Ints(_) => "int8",
                    ColumnValues::Smalls(_) => "int2",
                    ColumnValues::Bools(_) => "bool",
                    ColumnValues::Texts(_) => "text",
                };
                format!("${}::{kind}[]", i + 1)
            })
            .collect();
        let names: Vec<String> = (1..=self.0.len()).map(|i| format!("column{i}")).collect();
        format!("SELECT * FROM unnest({}) AS v ({})", arrays.join(", "), names.join(", "))
    }

    fn bind(self, mut query: BoxedSqlQuery<'a, Pg, SqlQuery>) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
        for column in self.0 {
            query = match column {
                ColumnValues::Ints(v) => query.bind::<Array<Nullable<BigInt>>, _>(v),
                ColumnValues::Smalls(v) => query.bind::<Array<SmallInt>, _>(v),
                ColumnValues::Bools(v) => query.bind::<Array<Bool>, _>(v),
                ColumnValues::Texts(v) => query.bind::<Array<Nullable<Text>>, _>(v),
            };
        }
        query
    }
}

fn bind_all<'a>(
    mut query: BoxedSqlQuery<'a, Sqlite, SqlQuery>,
    rows: &[Vec<Value<'a>>],
) -> BoxedSqlQuery<'a, Sqlite, SqlQuery> {
    for value in rows.iter().flatten() {
        query = match *value {
            Value::Int(v) => query.bind::<BigInt, _>(v),
            Value::Small(v) => query.bind::<SmallInt, _>(v),
            Value::Bool(v) => query.bind::<Bool, _>(v),
            Value::Text(v) => query.bind::<Text, _>(v),
            Value::NullableInt(v) => query.bind::<Nullable<BigInt>, _>(v),
            Value::NullableText(v) => query.bind::<Nullable<Text>, _>(v),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_a_values_list_on_sqlite_and_arrays_by_column_on_postgresql() {
        assert_eq!(values_list(2, 2), "VALUES (?, ?), (?, ?)");
        assert_eq!(values_list(1, 3), "VALUES (?, ?, ?)");
        let rows = [row![1i64, "a", 2i16, true, None::<&str>], row![Some(2i64), Some("b"), 3i16, false, "c"]];
        let columns = Columns::of(&rows, 5).unwrap();
        assert_eq!(
            columns.unnest(),
            "SELECT * FROM unnest($1::int8[], $2::text[], $3::int2[], $4::bool[], $5::text[]) \
             AS v (column1, column2, column3, column4, column5)"
        );
        assert!(matches!(&columns.0[0], ColumnValues::Ints(v) if v == &[Some(1), Some(2)]));
        assert!(matches!(&columns.0[4], ColumnValues::Texts(v) if v == &[None, Some("c")]));
        let err = Columns::of(&[row![1i64], row!["x"]], 1).err().expect("a column of integers and text");
        assert!(err.to_string().contains("column 1"), "{err}");
    }

    #[test]
    fn rows_it_cannot_key_or_of_another_width_fail_the_statement() {
        assert_eq!(leading_ids(&[row![1i64, "a"], row![2i64, "b"]]).unwrap(), [1, 2]);
        assert!(leading_ids(&[row![1i64, "a"], row!["b", 2i64]]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display()), 1).unwrap();
        db.migrate().unwrap();
        let mut conn = db.conn().unwrap();
        let err = update_by_id(&mut conn, "endpoints", "hostname = v.column2", &[row![1i64, "a"], row!["x", "b"]]);
        assert!(err.is_err(), "a row without an id must fail, not be skipped");
        let err = execute_values(
            &mut conn,
            "INSERT INTO events (at, endpoint_id, kind, message)",
            "",
            &[row![1i64, 1i64, "k", "m"], row![1i64, 1i64, "k"]],
        );
        assert!(err.is_err(), "rows of different widths must fail");
    }
}
