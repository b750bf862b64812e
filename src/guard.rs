//! The removal guards: at most so many removals of what a group (or an organization) holds
//! now, and never all of it without `--allow-empty`. Mirroring a group's members and
//! deprovisioning an organization's users ask the same question in their own words.

/// `--max-removals`: a count, or a share of a group's current members.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxRemovals {
    Count(u64),
    Percent(f64),
}

impl MaxRemovals {
    /// The most removals allowed from a group of `current` members: a count as given, a share
    /// rounded down but at least 1.
    pub fn limit(self, current: usize) -> usize {
        match self {
            MaxRemovals::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            MaxRemovals::Percent(p) => ((current as f64 * p / 100.0).floor() as usize).max(1),
        }
    }

    /// As `--help` shows it and `parse` reads it: `25` or `10%`.
    pub fn text(self) -> String {
        match self {
            MaxRemovals::Count(n) => n.to_string(),
            MaxRemovals::Percent(p) => format!("{p}%"),
        }
    }

    /// `--max-removals`: `25` or `10%`.
    pub fn parse(s: &str) -> Result<MaxRemovals, String> {
        let s = s.trim();
        let err = || "expected a count (25) or a percentage (10%)".to_string();
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if p.is_finite() && (0.0..=100.0).contains(&p) => Ok(MaxRemovals::Percent(p)),
                _ => Err(err()),
            },
            None => s.parse::<u64>().map(MaxRemovals::Count).map_err(|_| err()),
        }
    }
}

/// A safety limit on removals: at most `limit` of what is there now, and never all of it
/// without `--allow-empty`. The same for a group's members (`--max-removals`) and an
/// organization's users (`--max-user-removals`); only the words of its messages differ.
pub struct Guard {
    pub limit: MaxRemovals,
    pub allow_empty: bool,
    /// The flag that sets the limit.
    pub flag: &'static str,
    /// What removes ("mirroring"), from what ("group"), what it holds ("current members"),
    /// and what one removal is ("removals").
    pub doing: &'static str,
    pub holder: &'static str,
    pub held: &'static str,
    pub removals: &'static str,
}

impl Guard {
    /// `--max-removals` on a group's current members (mirror and remove modes).
    pub fn members(limit: MaxRemovals, allow_empty: bool) -> Guard {
        Guard {
            limit,
            allow_empty,
            flag: "--max-removals",
            doing: "mirroring",
            holder: "group",
            held: "current members",
            removals: "removals",
        }
    }

    /// `--max-user-removals` on an organization's users (`--deprovision-users`).
    pub fn users(limit: MaxRemovals, allow_empty: bool) -> Guard {
        Guard {
            limit,
            allow_empty,
            flag: "--max-user-removals",
            doing: "deprovisioning",
            holder: "organization",
            held: "users",
            removals: "user removals",
        }
    }

    /// Why removing `removals` of `current` is refused, if it is (with the limit that refused).
    pub fn refusal(&self, removals: usize, current: usize) -> Option<(String, usize)> {
        let limit = self.limit.limit(current);
        let message = if removals == current && !self.allow_empty {
            format!(
                "not removed: {} would remove every one of the {}'s {current} {} (the input \
                 lists none of them); check the input, or pass --allow-empty",
                self.doing, self.holder, self.held
            )
        } else if removals > limit {
            format!(
                "not removed: the {} needs {removals} {} of {current} {}, more than {} allows \
                 ({limit}); check the input, or raise {}",
                self.holder, self.removals, self.held, self.flag, self.flag
            )
        } else {
            return None;
        };
        Some((message, limit))
    }
}
