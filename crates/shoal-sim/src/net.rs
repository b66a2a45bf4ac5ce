//! Links and flows: every host has an uplink and a downlink of a given
//! capacity (bytes/s); a flow crosses its sender's uplink and its
//! receiver's downlink, and runs at its fair share of the two.
//!
//! The shares are max-min fair, computed locally: when a flow starts or
//! ends, the flows on the two links it crosses are given max-min fair
//! rates (progressive filling) over every link they cross, with the other
//! flows on those links held at their current rates; a flow elsewhere
//! keeps its rate until one of its own links changes (so it may stay
//! below its fair share for a while, never above a link's capacity).
//! Completions sit in an indexed heap ([`crate::due`]): a flow whose rate
//! changed has its one entry moved, a flow that ends has it taken out.

use crate::clock::SimTime;
use crate::due::Due;

/// A link (one direction of a host's connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkId(pub u32);

/// A flow, valid until it completes or is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowId(u32);

struct Link {
    /// Bytes/s.
    cap: f64,
    flows: Vec<u32>,
    /// The sum of its flows' rates.
    used: f64,
}

struct Flow<T> {
    links: [u32; 2],
    /// Bytes not yet sent as of `since`.
    left: f64,
    len: f64,
    /// Bytes/s.
    rate: f64,
    since: SimTime,
    tag: Option<T>,
}

/// The network: links, flows, completions.
pub struct Net<T> {
    links: Vec<Link>,
    flows: Vec<Flow<T>>,
    free: Vec<u32>,
    done: Due,
    /// A refresh's working buffers (no allocation per refresh).
    scratch: Scratch,
}

/// [`Net::refresh`]'s buffers, empty (and `pos` all [`UNSEEN`]) between
/// refreshes.
#[derive(Default)]
struct Scratch {
    /// The flows whose rates are recomputed.
    touched: Vec<u32>,
    /// Each touched flow's links and rate, read in one pass (the flows
    /// lie all over memory; one pass lets the reads overlap).
    info: Vec<([u32; 2], f64)>,
    /// (link, capacity left for the touched flows, touched flows on it
    /// not yet fixed).
    crossed: Vec<(u32, f64, u32)>,
    /// By link: its index in `crossed`, or [`UNSEEN`].
    pos: Vec<u32>,
    /// The new rate of each touched flow, once fixed.
    rates: Vec<Option<f64>>,
    /// By `crossed` entry: where its touched flows start in `members`.
    start: Vec<u32>,
    /// The touched flows (indices into `touched`) on each crossed link,
    /// link after link, each link's in `touched` order.
    members: Vec<u32>,
    /// Where the next member of each crossed link goes, while filling.
    fill: Vec<u32>,
    /// By `crossed` entry: its fair share (capacity left over flows left
    /// to fix), or infinity once none is left; kept up to date as flows
    /// are fixed rather than divided out at every comparison.
    share: Vec<f64>,
    /// The `crossed` entries with one touched flow, by (share, link).
    singles: Vec<u32>,
    /// The `crossed` entries with several.
    multis: Vec<u32>,
}

/// [`Scratch::pos`] of a link not in `crossed`.
const UNSEEN: u32 = u32::MAX;

impl<T: Copy> Default for Net<T> {
    fn default() -> Self {
        Net {
            links: Vec::new(),
            flows: Vec::new(),
            free: Vec::new(),
            done: Due::default(),
            scratch: Scratch::default(),
        }
    }
}

impl<T: Copy> Net<T> {
    /// A link of `cap` bytes/s.
    pub fn link(&mut self, cap: f64) -> LinkId {
        assert!(cap > 0.0, "a link needs a positive capacity");
        self.links.push(Link { cap, flows: Vec::new(), used: 0.0 });
        self.scratch.pos.push(UNSEEN);
        LinkId(self.links.len() as u32 - 1)
    }

    /// Start a flow of `bytes` from `up` to `down` at `now`.
    pub fn start(&mut self, now: SimTime, up: LinkId, down: LinkId, bytes: u64, tag: T) -> FlowId {
        let flow = Flow {
            links: [up.0, down.0],
            left: bytes as f64,
            len: bytes as f64,
            rate: 0.0,
            since: now,
            tag: Some(tag),
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.flows[i as usize] = flow;
                i
            }
            None => {
                self.flows.push(flow);
                self.flows.len() as u32 - 1
            }
        };
        self.links[up.0 as usize].flows.push(id);
        self.links[down.0 as usize].flows.push(id);
        self.refresh(now, [up.0, down.0]);
        FlowId(id)
    }

    /// Stop a flow before it completes; returns its tag and the bytes it
    /// had sent.
    pub fn remove(&mut self, now: SimTime, id: FlowId) -> Option<(T, u64)> {
        let f = self.flows.get_mut(id.0 as usize)?;
        let tag = f.tag.take()?;
        settle(f, now);
        let sent = (f.len - f.left).max(0.0) as u64;
        let links = f.links;
        self.done.remove(id.0);
        self.unlink(id.0, links);
        self.free.push(id.0);
        self.refresh(now, links);
        Some((tag, sent))
    }

    /// Flows crossing `link`.
    pub fn flows_on(&self, link: LinkId) -> Vec<FlowId> {
        self.links[link.0 as usize].flows.iter().map(|&f| FlowId(f)).collect()
    }

    /// When the next flow completes.
    pub fn next_at(&mut self) -> Option<SimTime> {
        self.done.peek().map(|(at, _)| at)
    }

    /// The next completed flow, if one is due by `now`: it is removed and
    /// its tag returned.
    pub fn pop_done(&mut self, now: SimTime) -> Option<T> {
        let at = self.next_at()?;
        if at > now {
            return None;
        }
        let (at, f) = self.done.peek().expect("peeked");
        self.done.remove(f);
        let flow = &mut self.flows[f as usize];
        let tag = flow.tag.take().expect("live flow");
        let links = flow.links;
        self.unlink(f, links);
        self.free.push(f);
        self.refresh(at, links);
        Some(tag)
    }

    /// Flows running now.
    pub fn live(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    fn unlink(&mut self, f: u32, links: [u32; 2]) {
        let rate = std::mem::take(&mut self.flows[f as usize].rate);
        for l in links {
            let link = &mut self.links[l as usize];
            link.used = (link.used - rate).max(0.0);
            if let Some(p) = link.flows.iter().position(|&x| x == f) {
                link.flows.swap_remove(p);
            }
        }
    }

    /// Recompute the rates of the flows on `links` at `now`: max-min fair
    /// (progressive filling) among those flows, over every link they
    /// cross, with the other flows on those links held at their rates.
    fn refresh(&mut self, now: SimTime, links: [u32; 2]) {
        let mut s = std::mem::take(&mut self.scratch);
        for l in links {
            s.touched.extend_from_slice(&self.links[l as usize].flows);
        }
        s.touched.sort_unstable();
        s.touched.dedup();
        s.info.extend(s.touched.iter().map(|&f| {
            let flow = &self.flows[f as usize];
            (flow.links, flow.rate)
        }));
        for &(links, rate) in &s.info {
            for l in links {
                match s.pos[l as usize] {
                    UNSEEN => {
                        s.pos[l as usize] = s.crossed.len() as u32;
                        s.crossed.push((l, rate, 1));
                    }
                    p => {
                        let c = &mut s.crossed[p as usize];
                        c.1 += rate;
                        c.2 += 1;
                    }
                }
            }
        }
        // What the other flows on each link leave.
        for c in s.crossed.iter_mut() {
            let link = &self.links[c.0 as usize];
            c.1 = (link.cap - (link.used - c.1)).max(0.0);
        }
        s.share.extend(s.crossed.iter().map(|c| share_of(c.1, c.2)));
        s.rates.resize(s.touched.len(), None);
        // Each crossed link's touched flows, found without a scan per link.
        let mut at = 0;
        for c in &s.crossed {
            s.start.push(at);
            at += c.2;
        }
        s.start.push(at);
        s.members.resize(at as usize, 0);
        s.fill.extend_from_slice(&s.start);
        for (k, &(links, _)) in s.info.iter().enumerate() {
            for l in links {
                let p = s.pos[l as usize] as usize;
                s.members[s.fill[p] as usize] = k as u32;
                s.fill[p] += 1;
            }
        }
        // The tightest link with flows left to fix (ties to the lowest
        // link), until none is left. A link crossed by one touched flow
        // keeps its share until that flow is fixed (then it has none left
        // to fix), so those links are sorted once and taken in order; only
        // the few crossed by several are compared anew each time.
        for (p, c) in s.crossed.iter().enumerate() {
            if c.2 == 1 { s.singles.push(p as u32) } else { s.multis.push(p as u32) }
        }
        let mut singles = std::mem::take(&mut s.singles);
        let key = |p: u32| (s.share[p as usize], s.crossed[p as usize].0);
        singles.sort_unstable_by(|&a, &b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
        let mut next = 0;
        loop {
            while singles.get(next).is_some_and(|&p| s.share[p as usize] == f64::INFINITY) {
                next += 1;
            }
            let mut best = singles.get(next).map(|&p| p as usize);
            for &p in &s.multis {
                let p = p as usize;
                let share = s.share[p];
                if share == f64::INFINITY {
                    continue;
                }
                best = match best {
                    Some(b) if (s.share[b], s.crossed[b].0) <= (share, s.crossed[p].0) => Some(b),
                    _ => Some(p),
                };
            }
            let Some(p) = best else { break };
            let fair = s.share[p].max(MIN_RATE);
            for m in s.start[p]..s.start[p + 1] {
                let k = s.members[m as usize] as usize;
                if s.rates[k].is_some() {
                    continue;
                }
                s.rates[k] = Some(fair);
                for fl in s.info[k].0 {
                    let q = s.pos[fl as usize] as usize;
                    let c = &mut s.crossed[q];
                    c.1 = (c.1 - fair).max(0.0);
                    c.2 -= 1;
                    s.share[q] = share_of(c.1, c.2);
                }
            }
        }
        for (k, &f) in s.touched.iter().enumerate() {
            let rate = s.rates[k].expect("every touched flow got a rate");
            let flow = &mut self.flows[f as usize];
            if flow.rate == rate {
                continue;
            }
            settle(flow, now);
            let delta = rate - flow.rate;
            flow.rate = rate;
            for l in flow.links {
                self.links[l as usize].used += delta;
            }
            let secs = flow.left.max(0.0) / rate;
            let at = SimTime(now.0.saturating_add((secs * 1e9).ceil() as u64));
            self.done.set(f, at);
        }
        for c in &s.crossed {
            s.pos[c.0 as usize] = UNSEEN;
        }
        s.touched.clear();
        s.info.clear();
        s.share.clear();
        s.crossed.clear();
        s.rates.clear();
        s.start.clear();
        s.members.clear();
        s.fill.clear();
        singles.clear();
        s.singles = singles;
        s.multis.clear();
        self.scratch = s;
    }
}

/// The fair share of `left` bytes/s over `n` flows; infinity for none.
fn share_of(left: f64, n: u32) -> f64 {
    if n == 0 { f64::INFINITY } else { left / f64::from(n) }
}

/// The slowest a flow runs (bytes/s): a link shared by more flows than
/// its capacity allows still moves each (no flow waits forever).
const MIN_RATE: f64 = 1.0;

/// Account for the bytes `f` sent since it was last settled.
fn settle<T>(f: &mut Flow<T>, now: SimTime) {
    let dt = now.0.saturating_sub(f.since.0) as f64 / 1e9;
    f.left -= f.rate * dt;
    f.since = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;

    fn drain(net: &mut Net<u32>) -> Vec<(u32, f64)> {
        let mut out = Vec::new();
        while let Some(at) = net.next_at() {
            let tag = net.pop_done(at).unwrap();
            out.push((tag, at.secs()));
        }
        out
    }

    #[test]
    fn one_flow_runs_at_the_slower_link() {
        let mut net = Net::default();
        let (up, down) = (net.link(10.0 * MB), net.link(5.0 * MB));
        net.start(SimTime::ZERO, up, down, 10_000_000, 1);
        let done = drain(&mut net);
        assert_eq!(done.len(), 1);
        assert!((done[0].1 - 2.0).abs() < 1e-6, "{done:?}");
    }

    #[test]
    fn flows_sharing_an_uplink_split_it_and_the_survivor_speeds_up() {
        let mut net = Net::default();
        let up = net.link(10.0 * MB);
        let (d1, d2) = (net.link(100.0 * MB), net.link(100.0 * MB));
        net.start(SimTime::ZERO, up, d1, 10_000_000, 1);
        net.start(SimTime::ZERO, up, d2, 20_000_000, 2);
        // Both at 5 MB/s until flow 1 ends at 2 s; flow 2 has 10 MB left,
        // then alone at 10 MB/s: done at 3 s.
        let done = drain(&mut net);
        assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 2]);
        assert!((done[0].1 - 2.0).abs() < 1e-6 && (done[1].1 - 3.0).abs() < 1e-6, "{done:?}");
    }

    #[test]
    fn a_flow_held_back_elsewhere_leaves_its_share_to_the_others() {
        let mut net = Net::default();
        let up = net.link(10.0 * MB);
        let (slow, fast) = (net.link(2.0 * MB), net.link(100.0 * MB));
        net.start(SimTime::ZERO, up, slow, 2_000_000, 1);
        net.start(SimTime::ZERO, up, fast, 8_000_000, 2);
        // 2 MB/s to the slow downlink, the other 8 MB/s to the fast one.
        let done = drain(&mut net);
        assert!(done.iter().all(|d| (d.1 - 1.0).abs() < 1e-6), "{done:?}");
    }

    #[test]
    fn a_removed_flow_reports_what_it_sent_and_never_completes() {
        let mut net = Net::default();
        let (up, down) = (net.link(10.0 * MB), net.link(10.0 * MB));
        let f = net.start(SimTime::ZERO, up, down, 10_000_000, 7);
        let (tag, sent) = net.remove(SimTime::from_duration(std::time::Duration::from_millis(300)), f).unwrap();
        assert_eq!((tag, sent), (7, 3_000_000));
        assert_eq!(net.next_at(), None);
        assert_eq!(net.live(), 0);
    }
}
