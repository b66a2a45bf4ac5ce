//! Platforms as image indexes name them (`linux/amd64`, `linux/arm/v7`).

use crate::PrewarmError;

/// A platform such as `linux/amd64` or `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`.
    pub arch: String,
    /// `v8`, if given.
    pub variant: Option<String>,
}

impl std::str::FromStr for Platform {
    type Err = PrewarmError;

    fn from_str(s: &str) -> Result<Self, PrewarmError> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(PrewarmError::BadPlatform(s.to_owned()));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform { os: (*os).into(), arch: (*arch).into(), variant: None }),
            [os, arch, v] => Ok(Platform { os: (*os).into(), arch: (*arch).into(), variant: Some((*v).into()) }),
            _ => Err(PrewarmError::BadPlatform(s.to_owned())),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// This machine's platform, as image indexes name it.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform { os: std::env::consts::OS.into(), arch: arch.into(), variant: None }
    }

    /// Parses each of `given`; none given: this machine's.
    pub fn parse_all_or_host(given: &[String]) -> Result<Vec<Platform>, PrewarmError> {
        if given.is_empty() {
            return Ok(vec![Platform::host()]);
        }
        given.iter().map(|p| p.parse()).collect()
    }

    /// Whether an index entry's `platform` object is this one.
    pub fn matches(&self, p: &serde_json::Value) -> bool {
        p["os"] == self.os.as_str()
            && p["architecture"] == self.arch.as_str()
            && self.variant.as_deref().is_none_or(|v| p["variant"] == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        assert_eq!("linux/arm64/v8".parse::<Platform>().unwrap().to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//".parse::<Platform>().is_err());
        let p: Platform = "linux/amd64".parse().unwrap();
        assert!(p.matches(&serde_json::json!({"os": "linux", "architecture": "amd64"})));
        assert!(!p.matches(&serde_json::json!({"os": "linux", "architecture": "arm64"})));
        let v: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!v.matches(&serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"})));
        assert_eq!(Platform::parse_all_or_host(&[]).unwrap(), vec![Platform::host()]);
    }
}
