//! Numbers for people: counts and sizes as both front ends print them.

/// A count with a decimal suffix: `176.7K`, `6.1M`, `1.2B`.
pub fn count(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.1}B", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}K", x / 1e3)
    } else {
        n.to_string()
    }
}

/// Bytes in decimal units, as file managers show them: `2.8 MB`.
pub fn bytes(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2} GB", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} MB", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} KB", x / 1e3)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_unit() {
        assert_eq!(count(999), "999");
        assert_eq!(count(176_700), "176.7K");
        assert_eq!(count(6_140_000), "6.1M");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2_800_000), "2.8 MB");
        assert_eq!(bytes(1_350_000_000), "1.35 GB");
    }
}
