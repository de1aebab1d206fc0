//! Events: an in-memory ring of recent events plus a broadcast for live subscribers, in
//! Docker's JSON shape (`Type`, `Action`, `Actor{ID, Attributes}`, `scope`, `time`,
//! `timeNano`, and the legacy `status`/`id`/`from` for containers and images).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How many past events `--since` can reach (Docker keeps 256; a little more costs nothing).
const RING: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Event {
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub from: String,
    #[serde(rename = "Type")]
    pub typ: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

pub struct EventBus {
    ring: Mutex<VecDeque<Event>>,
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(RING);
        EventBus {
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            tx,
        }
    }
}

impl EventBus {
    pub fn publish(&self, typ: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        let now = chrono::Utc::now();
        let nano = now.timestamp_nanos_opt().unwrap_or(0);
        let legacy = typ == "container" || typ == "image";
        let ev = Event {
            status: if legacy {
                action.to_string()
            } else {
                String::new()
            },
            id: if legacy {
                id.to_string()
            } else {
                String::new()
            },
            from: if typ == "container" {
                attributes.get("image").cloned().unwrap_or_default()
            } else {
                String::new()
            },
            typ: typ.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".into(),
            time: nano / 1_000_000_000,
            time_nano: nano,
        };
        let mut ring = match self.ring.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(ev.clone());
        // Sent under the ring lock so a subscriber never sees an event twice or misses one.
        let _ = self.tx.send(ev);
    }

    /// The past events and a receiver for what follows, with nothing lost or doubled between.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let ring = match self.ring.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        (ring.iter().cloned().collect(), self.tx.subscribe())
    }
}

/// Docker's event filters: `type`, `event`, `container`, `image`, `label`, `volume`,
/// `network`, `daemon`, `scope`. Values of one key are OR-ed, keys AND-ed.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    f: HashMap<String, Vec<String>>,
}

const KEYS: &[&str] = &[
    "type",
    "event",
    "container",
    "image",
    "label",
    "volume",
    "network",
    "daemon",
    "scope",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
];

impl EventFilter {
    pub fn new(f: HashMap<String, Vec<String>>) -> Result<Self, String> {
        for k in f.keys() {
            if !KEYS.contains(&k.as_str()) {
                return Err(format!("invalid filter '{k}'"));
            }
        }
        Ok(EventFilter { f })
    }

    fn any(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        match self.f.get(key) {
            None => true,
            Some(v) if v.is_empty() => true,
            Some(v) => v.iter().any(|x| pred(x)),
        }
    }

    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str).unwrap_or("");
        let action_base = e.action.split(':').next().unwrap_or("");
        self.any("type", |t| t == e.typ)
            && self.any("event", |v| v == e.action || v == action_base)
            && self.any("scope", |s| s == e.scope)
            && self.any("container", |c| {
                e.typ == "container" && (e.actor.id.starts_with(c) || attr("name") == c)
            })
            && self.any("image", |i| {
                let img = if e.typ == "image" {
                    e.actor.id.as_str()
                } else {
                    attr("image")
                };
                img == i
                    || attr("name") == i
                    || img.strip_suffix(":latest") == Some(i)
                    || (e.typ == "image" && e.actor.id.trim_start_matches("sha256:").starts_with(i))
            })
            && self.any("volume", |v| e.typ == "volume" && e.actor.id == v)
            && self.any("network", |n| {
                e.typ == "network" && (e.actor.id == n || attr("name") == n)
            })
            && self.any("daemon", |d| e.typ == "daemon" && e.actor.id == d)
            // Unlike the other keys, every `label` given must match (dockerd's MatchKVList):
            // compose asks for its project's non-one-off containers with two labels.
            && self.f.get("label").is_none_or(|ls| {
                ls.iter().all(|l| match l.split_once('=') {
                    Some((k, v)) => e.actor.attributes.get(k).is_some_and(|a| a == v),
                    None => e.actor.attributes.contains_key(l.as_str()),
                })
            })
    }
}

/// `since`/`until` as the API sends them: unix seconds with an optional fraction
/// (`1700000000.123456789`). Returns nanoseconds.
pub fn parse_api_time(s: &str) -> Result<Option<i64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().map_err(|_| format!("invalid timestamp: {s}"))?;
    let mut nanos: i64 = 0;
    if !frac.is_empty() {
        let f: String = frac.chars().take(9).collect();
        let n: i64 = f.parse().map_err(|_| format!("invalid timestamp: {s}"))?;
        nanos = n * 10i64.pow(9 - f.len() as u32);
    }
    Ok(Some(sec * 1_000_000_000 + nanos))
}

impl crate::Engine {
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// A container event with Docker's attributes: its labels, `image` and `name`, plus `extra`.
    pub(crate) fn emit_container(&self, id: &str, action: &str, extra: &[(&str, String)]) {
        let mut attrs = BTreeMap::new();
        if let Ok(c) = self.lookup(id) {
            let rec = c.snapshot();
            for (k, v) in rec.config.labels.clone().unwrap_or_default() {
                attrs.insert(k, v);
            }
            attrs.insert("image".into(), rec.config.image.clone());
            attrs.insert("name".into(), rec.name.clone());
        }
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        self.inner.events.publish("container", action, id, attrs);
    }

    /// The same, from a record (for a container already gone from the registry).
    pub(crate) fn emit_container_rec(&self, rec: &crate::container::ContainerRecord, action: &str) {
        let mut attrs = BTreeMap::new();
        for (k, v) in rec.config.labels.clone().unwrap_or_default() {
            attrs.insert(k, v);
        }
        attrs.insert("image".into(), rec.config.image.clone());
        attrs.insert("name".into(), rec.name.clone());
        self.inner
            .events
            .publish("container", action, &rec.id, attrs);
    }

    pub(crate) fn emit(&self, typ: &str, action: &str, id: &str, extra: &[(&str, String)]) {
        let attrs = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.inner.events.publish(typ, action, id, attrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(typ: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            typ: typ.into(),
            action: action.into(),
            scope: "local".into(),
            actor: Actor {
                id: id.into(),
                attributes: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            ..Default::default()
        }
    }

    fn filter(pairs: &[(&str, &str)]) -> EventFilter {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        EventFilter::new(m).expect("filter")
    }

    #[test]
    fn filters_like_docker() {
        let e = ev(
            "container",
            "exec_start: sh -c true",
            "abcdef",
            &[("name", "web"), ("image", "busybox"), ("app", "x")],
        );
        assert!(filter(&[]).matches(&e));
        assert!(filter(&[("event", "exec_start")]).matches(&e));
        assert!(filter(&[("container", "web")]).matches(&e));
        assert!(filter(&[("container", "abc")]).matches(&e));
        assert!(filter(&[("image", "busybox")]).matches(&e));
        assert!(filter(&[("label", "app=x")]).matches(&e));
        assert!(filter(&[("label", "app")]).matches(&e));
        assert!(!filter(&[("label", "app=y")]).matches(&e));
        assert!(!filter(&[("label", "app=x"), ("label", "tier=db")]).matches(&e));
        assert!(filter(&[("type", "image"), ("type", "container")]).matches(&e));
        assert!(!filter(&[("type", "image")]).matches(&e));
        assert!(!filter(&[("event", "start"), ("container", "web")]).matches(&e));
        assert!(EventFilter::new(HashMap::from([("bogus".to_string(), vec![])])).is_err());
    }

    #[test]
    fn api_times() {
        assert_eq!(parse_api_time("10").expect("t"), Some(10_000_000_000));
        assert_eq!(parse_api_time("10.5").expect("t"), Some(10_500_000_000));
        assert_eq!(parse_api_time("").expect("t"), None);
        assert!(parse_api_time("x").is_err());
    }

    #[test]
    fn ring_and_subscribe_do_not_lose_or_double() {
        let bus = EventBus::default();
        bus.publish("container", "create", "a", BTreeMap::new());
        let (past, mut rx) = bus.subscribe();
        bus.publish("container", "start", "a", BTreeMap::new());
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].status, "create");
        let next = rx.try_recv().expect("live");
        assert_eq!(next.action, "start");
        assert!(rx.try_recv().is_err());
    }
}
