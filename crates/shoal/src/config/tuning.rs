//! `[swarm.tuning]`: the config file's table for [`SwarmTuning`]. Every key
//! is a field of it, named the same; unset keys keep its defaults. Durations
//! are written as the file's other durations (`"500ms"`, `"2s"`), byte
//! sizes and rates as sizes (`"1MiB"`, or a byte count).

use anyhow::bail;
use shoal_core::{ByteSize, HumanDuration};
use shoal_peer::swarm::SwarmTuning;

/// `[swarm.tuning]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TuningSection {
    per_parent: Option<usize>,
    max_parents: Option<usize>,
    window: Option<u32>,
    piece_deadline: Option<HumanDuration>,
    stall_floor: Option<HumanDuration>,
    stall_rtts: Option<u32>,
    corrupt_strikes: Option<u32>,
    connect_timeout: Option<HumanDuration>,
    idle: Option<HumanDuration>,
    busy_cooldown: Option<HumanDuration>,
    elsewhere_wait: Option<HumanDuration>,
    first_refresh: Option<HumanDuration>,
    refresh: Option<HumanDuration>,
    /// `[shortest, longest]`.
    stuck_backoff: Option<(HumanDuration, HumanDuration)>,
    give_up_after: Option<HumanDuration>,
    scheduler_deadline: Option<HumanDuration>,
    progress_every: Option<HumanDuration>,
    max_uploads: Option<u32>,
    per_child: Option<u32>,
    handout_grace: Option<HumanDuration>,
    pace_floor: Option<ByteSize>,
    pace_sample: Option<HumanDuration>,
    pace_burst: Option<ByteSize>,
}

impl TuningSection {
    /// The defaults with this table's keys over them, checked.
    /// `max_uploads` is the older `[swarm] max_uploads` key, which means
    /// the same as `[swarm.tuning] max_uploads`; only one may be set.
    pub(crate) fn resolve(&self, max_uploads: Option<u32>) -> anyhow::Result<SwarmTuning> {
        let mut t = SwarmTuning::default();
        let max_uploads = match (max_uploads, self.max_uploads) {
            (Some(_), Some(_)) => {
                bail!("[swarm] max_uploads and [swarm.tuning] max_uploads are the same setting: keep one of them")
            }
            (a, b) => a.or(b),
        };
        let set = |field: &mut std::time::Duration, value: Option<HumanDuration>| {
            if let Some(v) = value {
                *field = v.0;
            }
        };
        set(&mut t.piece_deadline, self.piece_deadline);
        set(&mut t.stall_floor, self.stall_floor);
        set(&mut t.connect_timeout, self.connect_timeout);
        set(&mut t.idle, self.idle);
        set(&mut t.busy_cooldown, self.busy_cooldown);
        set(&mut t.elsewhere_wait, self.elsewhere_wait);
        set(&mut t.first_refresh, self.first_refresh);
        set(&mut t.refresh, self.refresh);
        set(&mut t.give_up_after, self.give_up_after);
        set(&mut t.scheduler_deadline, self.scheduler_deadline);
        set(&mut t.progress_every, self.progress_every);
        set(&mut t.handout_grace, self.handout_grace);
        set(&mut t.pace_sample, self.pace_sample);
        if let Some((low, high)) = self.stuck_backoff {
            t.stuck_backoff = (low.0, high.0);
        }
        t.per_parent = self.per_parent.unwrap_or(t.per_parent);
        t.stall_rtts = self.stall_rtts.unwrap_or(t.stall_rtts);
        t.corrupt_strikes = self.corrupt_strikes.unwrap_or(t.corrupt_strikes);
        t.max_parents = self.max_parents.unwrap_or(t.max_parents);
        t.window = self.window.unwrap_or(t.window);
        t.max_uploads = max_uploads.unwrap_or(t.max_uploads);
        t.per_child = self.per_child.unwrap_or(t.per_child);
        t.pace_floor = self.pace_floor.map_or(t.pace_floor, |b| b.0);
        t.pace_burst = self.pace_burst.map_or(t.pace_burst, |b| b.0);
        if let Err(e) = t.check() {
            bail!("swarm.tuning.{e}");
        }
        Ok(t)
    }
}
