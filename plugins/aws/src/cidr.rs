//! IPv4 CIDR blocks: syntax, and the network address being the block's first
//! address (AWS refuses `10.0.1.5/24`).

/// A parsed IPv4 CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not an IPv4 CIDR block like \"10.0.0.0/16\"");
        let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32 && !prefix.starts_with('+') && (prefix == "0" || !prefix.starts_with('0')))
            .ok_or_else(bad)?;
        let octets: Vec<&str> = ip.split('.').collect();
        if octets.len() != 4 {
            return Err(bad());
        }
        let mut addr = 0u32;
        for o in octets {
            let ok = !o.is_empty()
                && o.len() <= 3
                && o.bytes().all(|b| b.is_ascii_digit())
                && (o == "0" || !o.starts_with('0'));
            let v: u8 = if ok { o.parse().map_err(|_| bad())? } else { return Err(bad()) };
            addr = (addr << 8) | u32::from(v);
        }
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return Err(format!(
                "`{text}` has host bits set: the block starting there is \"{}\"",
                Cidr { addr: cidr.network(), prefix }
            ));
        }
        Ok(cidr)
    }

    fn mask(self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) }
    }

    pub fn network(self) -> u32 {
        self.addr & self.mask()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.addr.to_be_bytes();
        write!(f, "{a}.{b}.{c}.{d}/{}", self.prefix)
    }
}

/// Checks a CIDR block whose prefix length must be within `min..=max`
/// (VPCs and subnets: /16 to /28).
pub fn check(text: &str, min: u8, max: u8) -> Result<(), String> {
    let c = Cidr::parse(text)?;
    if c.prefix < min || c.prefix > max {
        return Err(format!("`{text}`: the prefix length must be between /{min} and /{max}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_blocks() {
        assert_eq!(Cidr::parse("10.0.0.0/16").unwrap(), Cidr { addr: 0x0a00_0000, prefix: 16 });
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().prefix, 0);
        assert_eq!(Cidr::parse("192.168.1.7/32").unwrap().to_string(), "192.168.1.7/32");
        assert!(check("10.0.1.0/24", 16, 28).is_ok());
    }

    #[test]
    fn invalid_blocks() {
        for bad in [
            "10.0.0.0",
            "10.0.0/16",
            "10.0.0.256/24",
            "10.0.0.0/33",
            "a.b.c.d/8",
            "10.0.0.0/",
            "/8",
            "10.00.0.0/16",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            " 10.0.0.0/16",
            "10.0.0.0.0/16",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            Cidr::parse("10.0.1.5/24").unwrap_err(),
            "`10.0.1.5/24` has host bits set: the block starting there is \"10.0.1.0/24\""
        );
        assert!(check("10.0.0.0/8", 16, 28).unwrap_err().contains("between /16 and /28"));
        assert!(check("10.0.0.0/30", 16, 28).is_err());
    }
}
