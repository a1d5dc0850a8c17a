//! Analytics aggregated by the database, in the same shared SQL as the rest of the store:
//! however long the range (a year, all time), the answer is a few rows per unit, hour, nurse
//! and call status, so alertcall's memory does not grow with the alerts it covers.
//!
//! Percentiles are nearest rank (the smallest value with at least p% of the values at or
//! below it), so that the figure is always a time that was actually observed: Postgres'
//! `percentile_disc`, and window functions on SQLite (`{spread_of_vals}`).

use super::*;

/// The alerts of a range, one row each: `t` is the alert's time in epoch seconds
/// (`triggered_at`, or when alertcall first saw it if that cannot be read, as `AlertView`
/// reads it). Two branches, each on an index: the alerts whose time is in the range, and
/// those whose time cannot be read (with a page created in the range). `$columns` is what
/// each row carries besides `t`, of `a` and (on the second branch, and the first when
/// `$pages` joins them) `pg`; the pages are joined on `alerts.id`'s own type, the cheaper
/// to hash of the two.
macro_rules! ranged_alerts {
    ($columns:literal, $pages:literal) => {
        concat!(
            "SELECT {epoch:a.triggered_at} AS t, ",
            $columns,
            " FROM alerts a ",
            $pages,
            " WHERE {time_order:a.triggered_at} >= {time_order:$1} \
               AND {time_order:a.triggered_at} < {time_order:$2} \
             UNION ALL SELECT {epoch:pg.created_at} AS t, ",
            $columns,
            " FROM alerts a JOIN alertcall.pages pg ON a.id = {as_alert_id:pg.alert_id} \
             WHERE {time_order:a.triggered_at} IS NULL \
               AND pg.created_at >= $1 AND pg.created_at < $2"
        )
    };
}

/// Alerts of a range by hour and severity (as written), with the seed's monitoring counts.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HourCounts {
    /// The hour's start in epoch seconds (UTC).
    pub hour: i64,
    pub severity: String,
    pub alerts: i64,
    /// With `metadata.call` (the seed's "called"), of which `answered` and `acknowledged`.
    pub with_call: i64,
    pub call_answered: i64,
    pub call_acknowledged: i64,
}

/// A group of paged alerts (a unit) or of calls (a person's), and how a duration spreads
/// over it, in seconds: nearest-rank percentiles of the rows that have one.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Spread {
    /// The unit (`""` for none) or person; `None` for all of them together.
    pub grp: Option<String>,
    pub n_rows: i64,
    /// The rows with a duration (acknowledged alerts, answered calls).
    pub n_values: i64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub longest: Option<f64>,
    /// Alerts past the first step of their policy, and those whose policy ran out.
    pub escalated: i64,
    pub exhausted: i64,
}

/// Calls the provider accepted, by person, status and whether the nurse declined on them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CallCounts {
    /// `""` for a call to no staff member.
    pub person: String,
    pub status: String,
    pub declined: bool,
    pub calls: i64,
}

/// Everything `analytics::compute` needs of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregated {
    /// In hour order.
    pub hours: Vec<HourCounts>,
    /// Paged alerts per unit, and overall; triggered to acknowledged.
    pub units: Vec<Spread>,
    pub calls: Vec<CallCounts>,
    /// Placed to 1 pressed, of answered calls, per person.
    pub to_answer: Vec<Spread>,
}

impl SqlStore {
    /// The rows of `s` over the range `$1` to `$2`.
    async fn in_range<T: Rows>(
        &self,
        s: Stmt,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        doing: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let s = s.bind(from).bind(to);
        let Pool::Postgres(pool) = &self.pool else {
            return self.fetch_all(s).await.doing(doing);
        };
        // Each run is planned for its own range: a plan cached for a day's range (an index
        // scan) would read a year row by row. And Postgres would compile a year's scan to
        // machine code first (JIT), which costs more than it saves here (close to a second
        // measured on a million alerts).
        let mut tx = pool.begin().await.doing(doing)?;
        sqlx::raw_sql("SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off")
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        let rows = Conn::Postgres(&mut tx).fetch_all(s).await.doing(doing)?;
        tx.commit().await.doing(doing)?;
        Ok(rows)
    }
}

#[async_trait]
impl Aggregates for SqlStore {
    async fn aggregates(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Aggregated, StoreError> {
        let hours = self.stmt(concat!(
            "SELECT CAST({floor:t / 3600} AS BIGINT) * 3600 AS hour, severity, \
               count(*) AS alerts, sum(has_call) AS with_call, \
               sum(CASE WHEN has_call = 1 AND call_status = 'answered' THEN 1 ELSE 0 END) \
                 AS call_answered, \
               sum(CASE WHEN has_call = 1 AND status = 'acknowledged' THEN 1 ELSE 0 END) \
                 AS call_acknowledged \
             FROM (",
            ranged_alerts!(
                "CAST(a.severity AS TEXT) AS severity, CAST(a.status AS TEXT) AS status, \
                 CASE WHEN {has_call:a.metadata} THEN 1 ELSE 0 END AS has_call, \
                 {json_text:a.metadata, call.call_status} AS call_status",
                ""
            ),
            ") r GROUP BY 1, 2"
        ));
        let units = self.stmt(concat!(
            "WITH paged AS (",
            ranged_alerts!(
                "coalesce(pg.policy, '') AS unit, {epoch:a.acknowledged_at} AS acknowledged, \
                 CASE WHEN pg.step > 0 OR pg.round > 0 THEN 1 ELSE 0 END AS escalated, \
                 CASE WHEN pg.state = 'exhausted' THEN 1 ELSE 0 END AS exhausted",
                "JOIN alertcall.pages pg ON a.id = {as_alert_id:pg.alert_id}"
            ),
            "), vals AS ( \
               SELECT unit AS grp, acknowledged - t AS s, escalated, exhausted FROM paged \
               UNION ALL SELECT NULL, acknowledged - t, escalated, exhausted FROM paged) \
             {spread_of_vals}"
        ));
        let calls = self.stmt(
            "SELECT coalesce(c.person, '') AS person, c.status AS status, \
               c.declined_at IS NOT NULL AS declined, count(*) AS calls \
             FROM alertcall.calls c \
             WHERE c.provider_call_id IS NOT NULL AND c.created_at >= $1 AND c.created_at < $2 \
             GROUP BY 1, 2, 3",
        );
        let to_answer = self.stmt(
            "WITH vals AS ( \
               SELECT coalesce(c.person, '') AS grp, \
                      {epoch:c.answered_at} - {epoch:c.initiated_at} AS s, \
                      0 AS escalated, 0 AS exhausted \
               FROM alertcall.calls c \
               WHERE c.provider_call_id IS NOT NULL AND c.status = 'answered' \
                 AND c.answered_at IS NOT NULL AND c.initiated_at IS NOT NULL \
                 AND c.created_at >= $1 AND c.created_at < $2) \
             {spread_of_vals}",
        );
        // Each on a connection of its own: the database works on them at once.
        let (mut hours, units, calls, to_answer) = tokio::try_join!(
            self.in_range(hours, (from, to), "counting alerts by hour"),
            self.in_range(
                units,
                (from, to),
                "measuring the units' time to acknowledge"
            ),
            self.in_range(calls, (from, to), "counting calls by nurse"),
            self.in_range(to_answer, (from, to), "measuring the time to answer"),
        )?;
        hours.sort_by(|a: &HourCounts, b| (a.hour, &a.severity).cmp(&(b.hour, &b.severity)));
        Ok(Aggregated {
            hours,
            units,
            calls,
            to_answer,
        })
    }
}
