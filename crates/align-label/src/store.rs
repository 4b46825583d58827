//! Every SQL statement of the app, as functions over a connection. All values are bound as
//! parameters (`?1`, `?2`, ...); no SQL text is ever built from input.
//!
//! Writes are meant to run inside a transaction (the server's writer, or `store::transaction`
//! for the CLI); reads work on any connection.

use crate::db::now;
use crate::error::{LabelError, Result};
use crate::model::{
    Annotator, Axes, Choice, ComparisonText, LabelInput, NewItem, Project, Role, Strength, Verdict,
    Vote, MAX_COMMENT_CHARS,
};
use align_data::Message;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Runs `f` in a transaction on a plain connection (CLI commands), committing on `Ok`.
pub fn transaction<R>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let r = f(&tx)?;
    tx.commit()?;
    Ok(r)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

// ---------------------------------------------------------------------------------------------
// Projects and items

/// Creates a project; a taken name is a [`LabelError::Conflict`].
pub fn create_project(conn: &Connection, name: &str, guidelines: &str, overlap: u32) -> Result<Project> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(LabelError::Invalid("a project name needs 1 to 100 characters".into()));
    }
    if overlap == 0 {
        return Err(LabelError::Invalid("overlap must be at least 1 annotator per comparison".into()));
    }
    conn.execute(
        "INSERT INTO projects (name, guidelines, overlap, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, guidelines, overlap, now()],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            LabelError::Conflict(format!("a project named `{name}` already exists"))
        } else {
            e.into()
        }
    })?;
    Ok(Project { id: conn.last_insert_rowid(), name: name.into(), guidelines: guidelines.into(), overlap })
}

fn project_from_row(r: &rusqlite::Row) -> rusqlite::Result<Project> {
    Ok(Project { id: r.get(0)?, name: r.get(1)?, guidelines: r.get(2)?, overlap: r.get(3)? })
}

pub fn project_by_name(conn: &Connection, name: &str) -> Result<Project> {
    conn.query_row(
        "SELECT id, name, guidelines, overlap FROM projects WHERE name = ?1",
        params![name],
        project_from_row,
    )
    .optional()?
    .ok_or_else(|| LabelError::NotFound(format!("project `{name}`")))
}

pub fn project_by_id(conn: &Connection, id: i64) -> Result<Project> {
    conn.query_row(
        "SELECT id, name, guidelines, overlap FROM projects WHERE id = ?1",
        params![id],
        project_from_row,
    )
    .optional()?
    .ok_or_else(|| LabelError::NotFound(format!("project {id}")))
}

pub fn projects(conn: &Connection) -> Result<Vec<Project>> {
    let mut st = conn.prepare("SELECT id, name, guidelines, overlap FROM projects ORDER BY id")?;
    let rows = st.query_map([], project_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Adds items to a project; every pair of an item's responses becomes one comparison. Returns
/// (items, comparisons) added.
pub fn add_items(conn: &Connection, project_id: i64, items: &[NewItem]) -> Result<(usize, usize)> {
    let mut n_cmp = 0;
    let mut ins_item = conn.prepare("INSERT INTO items (project_id, source_id, prompt) VALUES (?1, ?2, ?3)")?;
    let mut ins_resp = conn.prepare("INSERT INTO responses (item_id, idx, content) VALUES (?1, ?2, ?3)")?;
    let mut ins_cmp = conn.prepare(
        "INSERT INTO comparisons (project_id, item_id, first_id, second_id, gold) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for item in items {
        let prompt = serde_json::to_string(&item.prompt)
            .map_err(|e| LabelError::Invalid(format!("prompt of `{}`: {e}", item.source_id)))?;
        ins_item.execute(params![project_id, item.source_id, prompt])?;
        let item_id = conn.last_insert_rowid();
        let mut ids = Vec::with_capacity(item.responses.len());
        for (i, r) in item.responses.iter().enumerate() {
            ins_resp.execute(params![item_id, i as i64, r])?;
            ids.push(conn.last_insert_rowid());
        }
        for i in 0..ids.len() {
            for j in i + 1..ids.len() {
                let gold = match item.gold {
                    Some(g) if g == i => Some("first"),
                    Some(g) if g == j => Some("second"),
                    _ => None,
                };
                ins_cmp.execute(params![project_id, item_id, ids[i], ids[j], gold])?;
                n_cmp += 1;
            }
        }
    }
    Ok((items.len(), n_cmp))
}

// ---------------------------------------------------------------------------------------------
// Annotators

/// Creates an account with the given token hash; a taken name is a [`LabelError::Conflict`].
pub fn add_annotator(conn: &Connection, name: &str, role: Role, token_hash: &str) -> Result<Annotator> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(LabelError::Invalid("an annotator name needs 1 to 100 printable characters".into()));
    }
    conn.execute(
        "INSERT INTO annotators (name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, role.as_str(), token_hash, now()],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            LabelError::Conflict(format!("an annotator named `{name}` already exists"))
        } else {
            e.into()
        }
    })?;
    Ok(Annotator { id: conn.last_insert_rowid(), name: name.into(), role })
}

/// Replaces an annotator's token hash (the old login link stops working).
pub fn set_token_hash(conn: &Connection, name: &str, token_hash: &str) -> Result<Annotator> {
    let a = annotator_by_name(conn, name)?;
    conn.execute("UPDATE annotators SET token_hash = ?1 WHERE id = ?2", params![token_hash, a.id])?;
    Ok(a)
}

fn annotator_from_row(r: &rusqlite::Row) -> rusqlite::Result<Annotator> {
    let role: String = r.get(2)?;
    Ok(Annotator { id: r.get(0)?, name: r.get(1)?, role: Role::parse(&role).unwrap_or(Role::Annotator) })
}

pub fn annotator_by_name(conn: &Connection, name: &str) -> Result<Annotator> {
    conn.query_row("SELECT id, name, role FROM annotators WHERE name = ?1", params![name], annotator_from_row)
        .optional()?
        .ok_or_else(|| LabelError::NotFound(format!("annotator `{name}`")))
}

/// The account a token hash belongs to, if any.
pub fn annotator_by_token_hash(conn: &Connection, hash: &str) -> Result<Option<Annotator>> {
    Ok(conn
        .query_row("SELECT id, name, role FROM annotators WHERE token_hash = ?1", params![hash], annotator_from_row)
        .optional()?)
}

pub fn has_admin(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM annotators WHERE role = 'admin')", [], |r| r.get(0))?)
}

/// Lets an annotator work on a project (idempotent).
pub fn add_member(conn: &Connection, project_id: i64, annotator_id: i64) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO members (project_id, annotator_id) VALUES (?1, ?2)",
        params![project_id, annotator_id],
    )?;
    Ok(())
}

/// The projects an annotator works on.
pub fn projects_of(conn: &Connection, annotator_id: i64) -> Result<Vec<Project>> {
    let mut st = conn.prepare(
        "SELECT p.id, p.name, p.guidelines, p.overlap FROM projects p
         JOIN members m ON m.project_id = p.id WHERE m.annotator_id = ?1 ORDER BY p.id",
    )?;
    let rows = st.query_map(params![annotator_id], project_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn is_member(conn: &Connection, project_id: i64, annotator_id: i64) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM members WHERE project_id = ?1 AND annotator_id = ?2)",
        params![project_id, annotator_id],
        |r| r.get(0),
    )?)
}

// ---------------------------------------------------------------------------------------------
// The queue

/// One comparison as an annotator sees it: A and B already in their stored random order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub assignment: i64,
    pub project: i64,
    pub prompt: Vec<Message>,
    pub a: String,
    pub b: String,
}

/// An annotator's progress on a project: labels given, and labels given plus those still open to
/// them (their open assignment and every comparison they could still be assigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub done: i64,
    pub total: i64,
}

/// The annotator's next comparison: their unlabeled assignment if they have one, else a new
/// assignment of the comparison that is closest to its full overlap (so comparisons complete and
/// agreement can be measured early), in import order, with A/B drawn at random by `swap`. Gold
/// check items go to every annotator, at their place in the import order.
/// `None` when nothing is left for them.
pub fn next_task(conn: &Connection, annotator_id: i64, project_id: i64, swap: bool) -> Result<Option<Task>> {
    if !is_member(conn, project_id, annotator_id)? {
        return Err(LabelError::NotFound(format!("project {project_id}")));
    }
    let open: Option<i64> = conn
        .query_row(
            "SELECT a.id FROM assignments a
             WHERE a.annotator_id = ?1 AND a.project_id = ?2
               AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.assignment_id = a.id)
             ORDER BY a.id LIMIT 1",
            params![annotator_id, project_id],
            |r| r.get(0),
        )
        .optional()?;
    let assignment = match open {
        Some(a) => a,
        None => {
            let overlap = project_by_id(conn, project_id)?.overlap;
            // Both walk the `comparisons_queue` index and stop at the first row not yet given to
            // this annotator.
            let regular: Option<i64> = conn
                .query_row(
                    "SELECT c.id FROM comparisons c
                     WHERE c.project_id = ?2 AND c.gold IS NULL AND c.n_assigned < ?3
                       AND NOT EXISTS (SELECT 1 FROM assignments a
                                       WHERE a.comparison_id = c.id AND a.annotator_id = ?1)
                     ORDER BY c.n_assigned DESC, c.id LIMIT 1",
                    params![annotator_id, project_id, overlap],
                    |r| r.get(0),
                )
                .optional()?;
            let gold: Option<i64> = conn
                .query_row(
                    "SELECT c.id FROM comparisons c
                     WHERE c.project_id = ?2 AND c.gold IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM assignments a
                                       WHERE a.comparison_id = c.id AND a.annotator_id = ?1)
                     ORDER BY c.id LIMIT 1",
                    params![annotator_id, project_id],
                    |r| r.get(0),
                )
                .optional()?;
            // Gold items come at their place in the import order.
            let pick = match (regular, gold) {
                (Some(r), Some(g)) => Some(r.min(g)),
                (r, g) => r.or(g),
            };
            let Some(cmp) = pick else { return Ok(None) };
            conn.execute(
                "INSERT INTO assignments (comparison_id, annotator_id, project_id, swapped, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![cmp, annotator_id, project_id, swap, now()],
            )?;
            let id = conn.last_insert_rowid();
            conn.execute("UPDATE comparisons SET n_assigned = n_assigned + 1 WHERE id = ?1", params![cmp])?;
            id
        }
    };
    task(conn, annotator_id, assignment).map(Some)
}

/// The task of one of the annotator's own assignments; another's is [`LabelError::NotFound`].
pub fn task(conn: &Connection, annotator_id: i64, assignment: i64) -> Result<Task> {
    let (project, prompt, first, second, swapped): (i64, String, String, String, bool) = conn
        .query_row(
            "SELECT a.project_id, i.prompt, r1.content, r2.content, a.swapped
             FROM assignments a
             JOIN comparisons c ON c.id = a.comparison_id
             JOIN items i ON i.id = c.item_id
             JOIN responses r1 ON r1.id = c.first_id
             JOIN responses r2 ON r2.id = c.second_id
             WHERE a.id = ?1 AND a.annotator_id = ?2",
            params![assignment, annotator_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?
        .ok_or_else(|| LabelError::NotFound(format!("assignment {assignment}")))?;
    let prompt: Vec<Message> = serde_json::from_str(&prompt)
        .map_err(|e| LabelError::Invalid(format!("stored prompt of assignment {assignment}: {e}")))?;
    let (a, b) = if swapped { (second, first) } else { (first, second) };
    Ok(Task { assignment, project, prompt, a, b })
}

pub fn progress(conn: &Connection, annotator_id: i64, project_id: i64) -> Result<Progress> {
    let overlap = project_by_id(conn, project_id)?.overlap;
    let (done, open): (i64, i64) = conn.query_row(
        "SELECT COUNT(l.assignment_id), COUNT(*) - COUNT(l.assignment_id)
         FROM assignments a LEFT JOIN labels l ON l.assignment_id = a.id
         WHERE a.annotator_id = ?1 AND a.project_id = ?2",
        params![annotator_id, project_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // Comparisons that could still go to someone (gold items go to everyone), less those already
    // given to this annotator.
    let open_to_all: i64 = conn.query_row(
        "SELECT COUNT(*) FROM comparisons
         WHERE project_id = ?1 AND (gold IS NOT NULL OR n_assigned < ?2)",
        params![project_id, overlap],
        |r| r.get(0),
    )?;
    let given_of_those: i64 = conn.query_row(
        "SELECT COUNT(*) FROM assignments a JOIN comparisons c ON c.id = a.comparison_id
         WHERE a.annotator_id = ?1 AND a.project_id = ?2 AND (c.gold IS NOT NULL OR c.n_assigned < ?3)",
        params![annotator_id, project_id, overlap],
        |r| r.get(0),
    )?;
    let available = open_to_all - given_of_those;
    Ok(Progress { done, total: done + open + available })
}

/// Stores (or revises) the label of one of the annotator's own assignments. Each assignment has
/// at most one label, so a retried submission never counts twice.
pub fn save_label(conn: &Connection, annotator_id: i64, l: &LabelInput) -> Result<()> {
    if l.comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(LabelError::Invalid(format!("a comment may have at most {MAX_COMMENT_CHARS} characters")));
    }
    let axes = [("helpful", l.axes.helpful), ("honest", l.axes.honest), ("harmless", l.axes.harmless)];
    if let Some((name, _)) = axes.iter().find(|(_, c)| *c == Some(Choice::BothBad)) {
        return Err(LabelError::Invalid(format!("axis `{name}` takes A, B or tie")));
    }
    let swapped: bool = conn
        .query_row(
            "SELECT swapped FROM assignments WHERE id = ?1 AND annotator_id = ?2",
            params![l.assignment, annotator_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| LabelError::NotFound(format!("assignment {}", l.assignment)))?;
    let v = |c: Option<Choice>| c.map(|c| Verdict::from_choice(c, swapped).as_str());
    let t = now();
    conn.execute(
        "INSERT INTO labels (assignment_id, verdict, strength, helpful, honest, harmless, comment,
                             duration_ms, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT (assignment_id) DO UPDATE SET
           verdict = excluded.verdict, strength = excluded.strength, helpful = excluded.helpful,
           honest = excluded.honest, harmless = excluded.harmless, comment = excluded.comment,
           duration_ms = excluded.duration_ms, updated_at = excluded.updated_at",
        params![
            l.assignment,
            Verdict::from_choice(l.choice, swapped).as_str(),
            l.strength.map(Strength::as_str),
            v(l.axes.helpful),
            v(l.axes.honest),
            v(l.axes.harmless),
            l.comment,
            l.ms.map(|m| m.min(i64::MAX as u64) as i64),
            t
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// What the admin views and the export read

/// Every vote of a project, in the comparisons' stored order.
pub fn votes(conn: &Connection, project_id: i64) -> Result<Vec<Vote>> {
    let mut st = conn.prepare(
        "SELECT a.comparison_id, a.annotator_id, n.name, l.verdict, l.strength,
                l.helpful, l.honest, l.harmless, l.comment, a.swapped
         FROM labels l
         JOIN assignments a ON a.id = l.assignment_id
         JOIN annotators n ON n.id = a.annotator_id
         WHERE a.project_id = ?1
         ORDER BY a.comparison_id, a.annotator_id",
    )?;
    let rows = st.query_map(params![project_id], |r| {
        let verdict: String = r.get(3)?;
        let strength: Option<String> = r.get(4)?;
        let axis = |i: usize| -> rusqlite::Result<Option<Verdict>> {
            Ok(r.get::<_, Option<String>>(i)?.as_deref().and_then(Verdict::parse))
        };
        Ok(Vote {
            comparison: r.get(0)?,
            annotator: r.get(1)?,
            annotator_name: r.get(2)?,
            verdict: Verdict::parse(&verdict).unwrap_or(Verdict::BothBad),
            strength: strength.as_deref().and_then(Strength::parse),
            axes: Axes { helpful: axis(5)?, honest: axis(6)?, harmless: axis(7)? },
            comment: r.get(8)?,
            swapped: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every comparison of a project with its texts and gold verdict.
pub fn comparisons(conn: &Connection, project_id: i64) -> Result<Vec<ComparisonText>> {
    let mut st = conn.prepare(
        "SELECT c.id, i.source_id, i.prompt, r1.content, r2.content, c.gold
         FROM comparisons c
         JOIN items i ON i.id = c.item_id
         JOIN responses r1 ON r1.id = c.first_id
         JOIN responses r2 ON r2.id = c.second_id
         WHERE c.project_id = ?1 ORDER BY c.id",
    )?;
    let rows = st.query_map(params![project_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?, r.get::<_, Option<String>>(5)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, source_id, prompt, first, second, gold) = row?;
        let prompt = serde_json::from_str(&prompt)
            .map_err(|e| LabelError::Invalid(format!("stored prompt of comparison {id}: {e}")))?;
        out.push(ComparisonText { id, source_id, prompt, first, second, gold: gold.as_deref().and_then(Verdict::parse) });
    }
    Ok(out)
}

/// Counts for the admin's project table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectCounts {
    pub id: i64,
    pub name: String,
    pub overlap: u32,
    pub items: i64,
    pub comparisons: i64,
    pub gold: i64,
    pub labels: i64,
    /// Labels still needed for every comparison to reach its overlap (gold items excluded).
    pub labels_needed: i64,
    pub members: i64,
}

pub fn project_counts(conn: &Connection) -> Result<Vec<ProjectCounts>> {
    let mut st = conn.prepare(
        "SELECT p.id, p.name, p.overlap,
           (SELECT COUNT(*) FROM items i WHERE i.project_id = p.id),
           (SELECT COUNT(*) FROM comparisons c WHERE c.project_id = p.id),
           (SELECT COUNT(*) FROM comparisons c WHERE c.project_id = p.id AND c.gold IS NOT NULL),
           (SELECT COUNT(*) FROM labels l JOIN assignments a ON a.id = l.assignment_id WHERE a.project_id = p.id),
           (SELECT COALESCE(SUM(MAX(p.overlap - (SELECT COUNT(*) FROM labels l JOIN assignments a
                       ON a.id = l.assignment_id WHERE a.comparison_id = c.id), 0)), 0)
              FROM comparisons c WHERE c.project_id = p.id AND c.gold IS NULL),
           (SELECT COUNT(*) FROM members m WHERE m.project_id = p.id)
         FROM projects p ORDER BY p.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ProjectCounts {
            id: r.get(0)?,
            name: r.get(1)?,
            overlap: r.get(2)?,
            items: r.get(3)?,
            comparisons: r.get(4)?,
            gold: r.get(5)?,
            labels: r.get(6)?,
            labels_needed: r.get(7)?,
            members: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One row of the admin's annotator table (over all projects).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnotatorRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub labels: i64,
    /// Median seconds per label.
    pub median_seconds: Option<f64>,
    /// Unix time of the last label.
    pub last_label: Option<i64>,
    pub projects: Vec<String>,
}

pub fn annotator_rows(conn: &Connection) -> Result<Vec<AnnotatorRow>> {
    let mut st = conn.prepare(
        "SELECT n.id, n.name, n.role,
           (SELECT COUNT(*) FROM labels l JOIN assignments a ON a.id = l.assignment_id WHERE a.annotator_id = n.id),
           (SELECT MAX(l.updated_at) FROM labels l JOIN assignments a ON a.id = l.assignment_id WHERE a.annotator_id = n.id),
           (SELECT COALESCE(GROUP_CONCAT(p.name, char(10)), '') FROM members m JOIN projects p ON p.id = m.project_id
              WHERE m.annotator_id = n.id)
         FROM annotators n ORDER BY n.id",
    )?;
    let rows = st.query_map([], |r| {
        let role: String = r.get(2)?;
        let projects: String = r.get(5)?;
        Ok(AnnotatorRow {
            id: r.get(0)?,
            name: r.get(1)?,
            role: Role::parse(&role).unwrap_or(Role::Annotator),
            labels: r.get(3)?,
            median_seconds: None,
            last_label: r.get(4)?,
            projects: projects.split('\n').filter(|s| !s.is_empty()).map(String::from).collect(),
        })
    })?;
    let mut out: Vec<AnnotatorRow> = rows.collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare(
        "SELECT l.duration_ms FROM labels l JOIN assignments a ON a.id = l.assignment_id
         WHERE a.annotator_id = ?1 AND l.duration_ms IS NOT NULL ORDER BY l.duration_ms",
    )?;
    for row in &mut out {
        let ms: Vec<i64> = st.query_map(params![row.id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        if !ms.is_empty() {
            row.median_seconds = Some(ms[ms.len() / 2] as f64 / 1000.0);
        }
    }
    Ok(out)
}

/// Total labels in the database (tests and the load report).
pub fn label_count(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM labels", [], |r| r.get(0))?)
}
