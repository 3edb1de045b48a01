//! Statements over many rows at once: `INSERT … VALUES (…), (…)`, upserts, and `UPDATE … FROM
//! (VALUES …)`, written once in the SQL both engines accept. An import writes hundreds of rows
//! per table and transaction; one statement per row costs a round trip each on PostgreSQL,
//! which made a 100,000-machine import take minutes there.

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Bool, HasSqlType, Nullable, SmallInt, Text};
use diesel::sqlite::Sqlite;
use diesel::{Column, RunQueryDsl};

use super::AnyConnection;

/// One bound value of a row.
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

/// Runs `{head} VALUES (…), (…) {tail}` over `rows` (all of one width) in as few statements as
/// the engines' limits on bound values allow; returns the rows affected. `head` and `tail` are
/// fragments written in the code (`'static`: never text from outside) and hold no parameters of
/// their own. A `VALUES` list names its columns `column1`, `column2`, … on both engines.
pub fn execute_values(
    conn: &mut AnyConnection,
    head: &'static str,
    tail: &'static str,
    rows: &[Vec<Value<'_>>],
) -> QueryResult<usize> {
    execute_chunks(conn, rows, |_| Ok((head.to_owned(), tail.to_owned())))
}

/// `UPDATE {table} SET {set} FROM (VALUES …) AS v WHERE {table}.id = v.column1`, for rows whose
/// first value is the id; `set` names the values `v.column2`, … The ids are listed once more as
/// literals: PostgreSQL's planner joins a few hundred `VALUES` rows to a table of any size by
/// reading all of it, and reads only those rows through the primary key for an `IN` list.
pub fn update_by_id(
    conn: &mut AnyConnection,
    table: &'static str,
    set: &'static str,
    rows: &[Vec<Value<'_>>],
) -> QueryResult<usize> {
    execute_chunks(conn, rows, |chunk| {
        Ok((
            format!("UPDATE {table} SET {set} FROM ("),
            format!(") AS v WHERE {table}.id = v.column1 AND {table}.id IN ({})", leading_ids(chunk)?),
        ))
    })
}

/// `DELETE FROM {table} WHERE ({key}, {column}) IN (VALUES …)`, for rows of two values, the
/// first the id in `key` (listed as literals too, for the index: see [`update_by_id`]). The
/// columns are the schema's own, so that a renamed column fails to compile rather than to run.
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
    execute_chunks(conn, rows, |chunk| {
        Ok((
            format!("DELETE FROM {table} WHERE {key} IN ({}) AND ({key}, {column}) IN (", leading_ids(chunk)?),
            ")".to_owned(),
        ))
    })
}

/// The rows' first values, integer keys, as an SQL list. A row without one is a bug of the
/// caller: it fails the statement (and its transaction) rather than being left out quietly.
fn leading_ids(rows: &[Vec<Value<'_>>]) -> QueryResult<String> {
    let ids = rows
        .iter()
        .map(|r| match r.first() {
            Some(Value::Int(id)) => Ok(*id),
            other => Err(misuse(format!("a row keyed by id starts with {other:?}, not an integer id"))),
        })
        .collect::<QueryResult<Vec<i64>>>()?;
    Ok(id_list(&ids))
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

fn execute_chunks(
    conn: &mut AnyConnection,
    rows: &[Vec<Value<'_>>],
    head_and_tail: impl Fn(&[Vec<Value<'_>>]) -> QueryResult<(String, String)>,
) -> QueryResult<usize> {
    let Some(width) = rows.first().map(Vec::len) else { return Ok(0) };
    if width == 0 || rows.iter().any(|r| r.len() != width) {
        return Err(misuse(format!("the rows of one statement must have one width, the first has {width}")));
    }
    let mut affected = 0;
    for chunk in rows.chunks((MAX_BINDS / width).max(1)) {
        let (head, tail) = head_and_tail(chunk)?;
        affected += match conn {
            AnyConnection::Sqlite(c) => {
                let sql = statement(&head, &tail, chunk.len(), width, |_| "?".to_owned());
                bind_all(diesel::sql_query(sql).into_boxed::<Sqlite>(), chunk).execute(c)?
            }
            AnyConnection::Postgresql(c) => {
                let sql = statement(&head, &tail, chunk.len(), width, |i| format!("${}", i + 1));
                bind_all(diesel::sql_query(sql).into_boxed::<Pg>(), chunk).execute(c)?
            }
        };
    }
    Ok(affected)
}

fn statement(head: &str, tail: &str, rows: usize, width: usize, placeholder: impl Fn(usize) -> String) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + 16 + rows * width * 6);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&placeholder(r * width + c));
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

fn bind_all<'a, DB>(
    mut query: BoxedSqlQuery<'a, DB, SqlQuery>,
    rows: &[Vec<Value<'a>>],
) -> BoxedSqlQuery<'a, DB, SqlQuery>
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<SmallInt> + HasSqlType<Bool> + HasSqlType<Text>,
    i64: ToSql<BigInt, DB>,
    i16: ToSql<SmallInt, DB>,
    bool: ToSql<Bool, DB>,
    &'a str: ToSql<Text, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
    Option<&'a str>: ToSql<Nullable<Text>, DB>,
{
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
    fn statements_number_their_placeholders_row_by_row() {
        let sql = statement("INSERT INTO t (a, b)", "ON CONFLICT DO NOTHING", 2, 2, |i| format!("${}", i + 1));
        assert_eq!(sql, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING");
        assert_eq!(statement("X", "", 1, 3, |_| "?".into()), "X VALUES (?, ?, ?) ");
    }

    #[test]
    fn rows_it_cannot_key_or_of_another_width_fail_the_statement() {
        assert_eq!(leading_ids(&[row![1i64, "a"], row![2i64, "b"]]).unwrap(), "1, 2");
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
