//! Static zone files served beside the catalog (`-zones-dir`): every
//! `*.zone` file in the directory is parsed once at startup (RFC 1035 master
//! format, `$ORIGIN`/`$TTL` honoured; the origin defaults to the file name
//! without `.zone`). Names under such a zone are answered authoritatively
//! from it, for hosts that are not in the catalog.

use hickory_proto::rr::{LowerName, Name, Record, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;
use std::collections::BTreeMap;
use std::path::Path;

pub struct Zone {
    origin: LowerName,
    records: BTreeMap<RrKey, Vec<Record>>,
    soa: Option<Record>,
}

#[derive(Default)]
pub struct StaticZones {
    zones: Vec<Zone>,
}

/// What a static zone says about one question.
pub enum ZoneAnswer {
    /// Records of the asked type (NOERROR).
    Records(Vec<Record>),
    /// The name exists but has no records of this type (NOERROR, SOA in authority).
    NoData(Option<Record>),
    /// The name does not exist in the zone (NXDOMAIN, SOA in authority).
    NxDomain(Option<Record>),
}

impl StaticZones {
    /// Loads every `*.zone` file of `dir`; a file that does not parse is an
    /// error naming it (the agent refuses to start on it).
    pub fn load(dir: &Path) -> Result<StaticZones, String> {
        let rd = std::fs::read_dir(dir).map_err(|e| format!("zones dir {}: {e}", dir.display()))?;
        let mut files: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("zone"))
            .collect();
        files.sort();
        let mut zones = Vec::new();
        for path in files {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let origin = Name::from_ascii(stem).map_err(|e| format!("{}: {e}", path.display()))?;
            let (origin, sets) = Parser::new(text, Some(path.clone()), Some(origin))
                .parse()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut records = BTreeMap::new();
            let mut soa = None;
            for (key, set) in sets {
                let recs: Vec<Record> = set.records_without_rrsigs().cloned().collect();
                if key.record_type == RecordType::SOA {
                    soa = recs.first().cloned();
                }
                records.insert(key, recs);
            }
            zones.push(Zone {
                origin: LowerName::from(origin),
                records,
                soa,
            });
        }
        Ok(StaticZones { zones })
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The answer for `name`/`qtype` if a loaded zone holds `name`.
    pub fn answer(&self, name: &LowerName, qtype: RecordType) -> Option<ZoneAnswer> {
        // The most specific zone wins.
        let zone = self
            .zones
            .iter()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.origin.num_labels())?;
        let exact = |t: RecordType| zone.records.get(&RrKey::new(name.clone(), t));
        if qtype == RecordType::ANY {
            let all: Vec<Record> = zone
                .records
                .iter()
                .filter(|(k, _)| &k.name == name)
                .flat_map(|(_, v)| v.iter().cloned())
                .collect();
            return Some(if all.is_empty() {
                ZoneAnswer::NxDomain(zone.soa.clone())
            } else {
                ZoneAnswer::Records(all)
            });
        }
        if let Some(recs) = exact(qtype) {
            return Some(ZoneAnswer::Records(recs.clone()));
        }
        if let Some(cname) = exact(RecordType::CNAME) {
            return Some(ZoneAnswer::Records(cname.clone()));
        }
        let exists = zone.records.keys().any(|k| &k.name == name);
        Some(if exists {
            ZoneAnswer::NoData(zone.soa.clone())
        } else {
            ZoneAnswer::NxDomain(zone.soa.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("example.internal.zone"),
            "$TTL 60\n@ IN SOA ns.example.internal. hostmaster.example.internal. 1 3600 600 86400 0\n\
             db IN A 10.1.2.3\nalias IN CNAME db\n",
        )
        .unwrap();
        let z = StaticZones::load(dir.path()).unwrap();
        let name = |s: &str| LowerName::from(Name::from_ascii(s).unwrap());
        assert!(
            matches!(z.answer(&name("db.example.internal."), RecordType::A), Some(ZoneAnswer::Records(r)) if r.len() == 1)
        );
        assert!(matches!(
            z.answer(&name("db.example.internal."), RecordType::AAAA),
            Some(ZoneAnswer::NoData(Some(_)))
        ));
        assert!(matches!(
            z.answer(&name("nope.example.internal."), RecordType::A),
            Some(ZoneAnswer::NxDomain(Some(_)))
        ));
        assert!(matches!(
            z.answer(&name("alias.example.internal."), RecordType::A),
            Some(ZoneAnswer::Records(_))
        ));
        assert!(z
            .answer(&name("web.service.consul."), RecordType::A)
            .is_none());
    }
}
