//! Who is on call: shifts in a named time zone, a rotation of people per shift, and
//! temporary overrides. Pure: everything is a function of the schedule and an instant.
//!
//! Shift boundaries are wall-clock times in the schedule's zone, so a night shift from 19:00
//! to 07:00 lasts 11 or 13 hours on the nights the clocks change, as it does on the ward.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// One schedule, e.g. "icu": its shifts and overrides.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub time_zone: TimeZone,
    pub shifts: Vec<Shift>,
    pub overrides: Vec<Override>,
}

/// A daily shift, e.g. day 07:00–19:00 or night 19:00–07:00 (ends the next day), covered by
/// `people` in turn, each for `rotation_days` consecutive days from `rotation_start`.
#[derive(Debug, Clone)]
pub struct Shift {
    pub name: String,
    pub start: Time,
    /// At or before `start`: the shift ends the next day.
    pub end: Time,
    pub people: Vec<String>,
    pub rotation_days: i64,
    pub rotation_start: Date,
}

/// "Ana covers Ben on 12 March 19:00–07:00": `person` is on call from `start` to `end`,
/// instead of `replaces` (or instead of everyone on the schedule when `replaces` is None).
#[derive(Debug, Clone)]
pub struct Override {
    pub person: String,
    pub replaces: Option<String>,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Someone on call at an instant, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCall {
    pub person: String,
    /// The shift's name, or "override".
    pub shift: String,
    pub from: Timestamp,
    pub until: Timestamp,
}

impl Shift {
    /// The shift that starts on `date`, as instants. Wall times that fall in a DST gap or
    /// fold resolve the way clocks do ("compatible": the later instant in a gap, the
    /// earlier in a fold).
    fn instance(&self, date: Date, tz: &TimeZone) -> Option<(Timestamp, Timestamp)> {
        let end_date = if self.end <= self.start {
            date.tomorrow().ok()?
        } else {
            date
        };
        let start = tz
            .to_timestamp(DateTime::from_parts(date, self.start))
            .ok()?;
        let end = tz
            .to_timestamp(DateTime::from_parts(end_date, self.end))
            .ok()?;
        Some((start, end))
    }

    /// Who covers the shift that starts on `date`.
    fn person_on(&self, date: Date) -> Option<&str> {
        if self.people.is_empty() {
            return None;
        }
        let days = (date - self.rotation_start).get_days() as i64;
        let turn = days.div_euclid(self.rotation_days.max(1));
        let n = self.people.len() as i64;
        Some(&self.people[turn.rem_euclid(n) as usize])
    }
}

impl Schedule {
    /// Everyone on call at `at`, overrides applied, in shift order.
    pub fn on_call(&self, at: Timestamp) -> Vec<OnCall> {
        let today = at.to_zoned(self.time_zone.clone()).date();
        let mut out = Vec::new();
        for shift in &self.shifts {
            // A shift on call now started today or (overnight) yesterday.
            for date in [today.yesterday().ok(), Some(today)].into_iter().flatten() {
                let Some((from, until)) = shift.instance(date, &self.time_zone) else {
                    continue;
                };
                if from <= at
                    && at < until
                    && let Some(person) = shift.person_on(date)
                {
                    out.push(OnCall {
                        person: person.to_string(),
                        shift: shift.name.clone(),
                        from,
                        until,
                    });
                }
            }
        }
        for o in self
            .overrides
            .iter()
            .filter(|o| o.start <= at && at < o.end)
        {
            match &o.replaces {
                Some(replaced) => out.retain(|c| &c.person != replaced),
                None => out.clear(),
            }
            out.push(OnCall {
                person: o.person.clone(),
                shift: "override".into(),
                from: o.start,
                until: o.end,
            });
        }
        out.dedup_by(|a, b| a.person == b.person);
        out
    }

    /// Everyone who appears on the schedule (its rotations and overrides).
    pub fn everyone(&self) -> Vec<String> {
        let mut people: Vec<String> = self
            .shifts
            .iter()
            .flat_map(|s| s.people.iter().cloned())
            .chain(self.overrides.iter().map(|o| o.person.clone()))
            .collect();
        people.sort();
        people.dedup();
        people
    }

    /// The next instant after `at` at which who is on call may change (a shift boundary or
    /// an override edge), within two days.
    pub fn next_handover(&self, at: Timestamp) -> Option<Timestamp> {
        let today = at.to_zoned(self.time_zone.clone()).date();
        let mut edges: Vec<Timestamp> = Vec::new();
        for shift in &self.shifts {
            for offset in -1..=2 {
                let Ok(date) = today.checked_add(offset.days()) else {
                    continue;
                };
                if let Some((from, until)) = shift.instance(date, &self.time_zone) {
                    edges.extend([from, until]);
                }
            }
        }
        edges.extend(self.overrides.iter().flat_map(|o| [o.start, o.end]));
        edges.into_iter().filter(|t| *t > at).min()
    }
}

impl Schedule {
    /// Every instant in `(from, until)` at which who is on call may change: shift starts and
    /// ends (in the schedule's zone, DST included) and override edges.
    pub fn handovers_between(&self, from: Timestamp, until: Timestamp) -> Vec<Timestamp> {
        let first = from
            .to_zoned(self.time_zone.clone())
            .date()
            .yesterday()
            .ok();
        let last = until.to_zoned(self.time_zone.clone()).date();
        let mut edges: Vec<Timestamp> = Vec::new();
        for shift in &self.shifts {
            let mut date = first;
            while let Some(d) = date.filter(|d| *d <= last) {
                if let Some((start, end)) = shift.instance(d, &self.time_zone) {
                    edges.extend([start, end]);
                }
                date = d.tomorrow().ok();
            }
        }
        edges.extend(self.overrides.iter().flat_map(|o| [o.start, o.end]));
        edges.retain(|t| from < *t && *t < until);
        edges.sort();
        edges.dedup();
        edges
    }
}

/// A wall-clock time in a zone, e.g. an override's "2026-03-12T19:00" in the ward's zone.
pub fn local_instant(tz: &TimeZone, local: DateTime) -> Option<Timestamp> {
    tz.to_timestamp(local).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn tz() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    fn ward() -> Schedule {
        Schedule {
            name: "icu".into(),
            time_zone: tz(),
            shifts: vec![
                Shift {
                    name: "day".into(),
                    start: Time::constant(7, 0, 0, 0),
                    end: Time::constant(19, 0, 0, 0),
                    people: vec!["ana".into(), "ben".into()],
                    rotation_days: 1,
                    rotation_start: date(2026, 1, 1),
                },
                Shift {
                    name: "night".into(),
                    start: Time::constant(19, 0, 0, 0),
                    end: Time::constant(7, 0, 0, 0),
                    people: vec!["cho".into(), "dev".into()],
                    rotation_days: 7,
                    rotation_start: date(2026, 1, 5),
                },
            ],
            overrides: vec![],
        }
    }

    /// A local wall time in New York as an instant.
    fn ny(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        local_instant(&tz(), date(y, mo, d).at(h, mi, 0, 0)).unwrap()
    }

    fn who(s: &Schedule, at: Timestamp) -> Vec<String> {
        s.on_call(at).into_iter().map(|c| c.person).collect()
    }

    #[test]
    fn shifts_and_rotations() {
        let s = ward();
        // 2026-01-01 is day 0 of the daily rotation: ana; the 2nd: ben.
        let table = [
            (ny(2026, 1, 1, 7, 0), vec!["ana"]),
            (ny(2026, 1, 1, 18, 59), vec!["ana"]),
            (ny(2026, 1, 2, 12, 0), vec!["ben"]),
            (ny(2026, 1, 3, 12, 0), vec!["ana"]),
            // Nights rotate weekly from Monday 5 January: cho, then dev.
            (ny(2026, 1, 5, 19, 0), vec!["cho"]),
            (ny(2026, 1, 6, 3, 0), vec!["cho"]),
            (ny(2026, 1, 11, 23, 0), vec!["cho"]),
            (ny(2026, 1, 12, 6, 59), vec!["cho"]),
            (ny(2026, 1, 12, 19, 0), vec!["dev"]),
            // Before the rotation's start it runs backwards the same way.
            (ny(2026, 1, 4, 20, 0), vec!["dev"]),
        ];
        for (at, want) in table {
            assert_eq!(who(&s, at), want, "at {at}");
        }
        let c = &s.on_call(ny(2026, 1, 6, 3, 0))[0];
        assert_eq!(
            (c.from, c.until),
            (ny(2026, 1, 5, 19, 0), ny(2026, 1, 6, 7, 0))
        );
    }

    #[test]
    fn night_shifts_across_dst_have_their_real_length() {
        let s = ward();
        // Spring forward: 8 March 2026, 02:00 → 03:00. The night of the 7th is 11 hours.
        let spring = &s.on_call(ny(2026, 3, 8, 4, 0))[0];
        assert_eq!(spring.until.duration_since(spring.from).as_hours(), 11);
        // Fall back: 1 November 2026, 02:00 → 01:00. The night of 31 October is 13 hours.
        let fall = &s.on_call(ny(2026, 11, 1, 1, 30))[0];
        assert_eq!(fall.until.duration_since(fall.from).as_hours(), 13);
        assert_eq!(fall.shift, "night");
        // Both 01:30s of the fold are in the same night shift.
        let second = Timestamp::from_second(ny(2026, 11, 1, 1, 30).as_second() + 3600).unwrap();
        assert_eq!(who(&s, second), who(&s, ny(2026, 11, 1, 1, 30)));
        // A day shift on the change day is still 07:00–19:00 local, 12 hours.
        let day = &s.on_call(ny(2026, 3, 8, 12, 0))[0];
        assert_eq!(day.until.duration_since(day.from).as_hours(), 12);
    }

    #[test]
    fn overrides_apply_exactly_at_their_edges() {
        let mut s = ward();
        // "Eve covers the night of 12 March 19:00–07:00" instead of whoever has it.
        s.overrides.push(Override {
            person: "eve".into(),
            replaces: None,
            start: ny(2026, 3, 12, 19, 0),
            end: ny(2026, 3, 13, 7, 0),
        });
        let before = Timestamp::from_second(ny(2026, 3, 12, 19, 0).as_second() - 1).unwrap();
        assert_eq!(who(&s, before), vec!["ana"], "the day shift until 19:00");
        assert_eq!(who(&s, ny(2026, 3, 12, 19, 0)), vec!["eve"]);
        let last = Timestamp::from_second(ny(2026, 3, 13, 7, 0).as_second() - 1).unwrap();
        assert_eq!(who(&s, last), vec!["eve"]);
        let after = s.on_call(ny(2026, 3, 13, 7, 0));
        assert_eq!(
            (after[0].person.as_str(), after[0].shift.as_str()),
            ("ben", "day")
        );
        // An override that names whom it replaces leaves the others on call.
        s.overrides.push(Override {
            person: "fay".into(),
            replaces: Some("ben".into()),
            start: ny(2026, 3, 13, 0, 0),
            end: ny(2026, 3, 14, 0, 0),
        });
        assert_eq!(who(&s, ny(2026, 3, 13, 12, 0)), vec!["fay"]);
        assert_eq!(who(&s, ny(2026, 3, 13, 21, 0)), vec!["dev", "fay"]);
    }

    #[test]
    fn next_handover_and_everyone() {
        let s = ward();
        assert_eq!(
            s.next_handover(ny(2026, 1, 1, 12, 0)),
            Some(ny(2026, 1, 1, 19, 0))
        );
        assert_eq!(
            s.next_handover(ny(2026, 1, 1, 23, 0)),
            Some(ny(2026, 1, 2, 7, 0))
        );
        assert_eq!(s.everyone(), ["ana", "ben", "cho", "dev"]);
    }
}
