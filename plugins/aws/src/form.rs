//! Request bodies of the AWS query protocol (EC2, RDS, ELBv2):
//! `application/x-www-form-urlencoded`, with lists flattened into numbered
//! keys (`SubnetIds.SubnetIdentifier.1`, `Subnets.member.1`, `Tag.1.Key`).

/// The parameters of one query-protocol call, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Adds `key=value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Params {
        self.0.push((key.into(), value.into()));
        self
    }

    /// Adds a list as `prefix.1=a&prefix.2=b` (numbering starts at 1).
    pub fn list<S: AsRef<str>>(&mut self, prefix: &str, items: &[S]) -> &mut Params {
        for (i, item) in items.iter().enumerate() {
            self.set(format!("{prefix}.{}", i + 1), item.as_ref());
        }
        self
    }

    /// Adds an EC2 filter: `Filter.N.Name=name&Filter.N.Value.1=value`.
    pub fn filter(&mut self, name: &str, value: &str) -> &mut Params {
        let n = self.0.iter().filter(|(k, _)| k.starts_with("Filter.") && k.ends_with(".Name")).count() + 1;
        self.set(format!("Filter.{n}.Name"), name);
        self.set(format!("Filter.{n}.Value.1"), value)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// The form body of a call: `Action`, `Version`, then the parameters.
pub fn encode(action: &str, version: &str, params: &Params) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("Action", action);
    out.append_pair("Version", version);
    for (k, v) in params.pairs() {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Percent-encodes one URL query value (Route53's `?name=..&type=..`).
pub fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_action_version_and_lists() {
        let mut p = Params::new();
        p.set("DBSubnetGroupName", "db-dev").list("SubnetIds.SubnetIdentifier", &["subnet-1", "subnet-2"]);
        assert_eq!(
            encode("CreateDBSubnetGroup", "2014-10-31", &p),
            "Action=CreateDBSubnetGroup&Version=2014-10-31&DBSubnetGroupName=db-dev\
             &SubnetIds.SubnetIdentifier.1=subnet-1&SubnetIds.SubnetIdentifier.2=subnet-2"
        );
    }

    #[test]
    fn escapes_values() {
        let mut p = Params::new();
        p.set("CidrBlock", "10.0.0.0/16").set("GroupDescription", "HTTPS & Postgres = ok");
        assert_eq!(
            encode("X", "1", &p),
            "Action=X&Version=1&CidrBlock=10.0.0.0%2F16&GroupDescription=HTTPS+%26+Postgres+%3D+ok"
        );
        assert_eq!(query_value("a b/c"), "a+b%2Fc");
    }

    #[test]
    fn numbers_filters() {
        let mut p = Params::new();
        p.filter("vpc-id", "vpc-1").filter("group-name", "web");
        let keys: Vec<_> = p.pairs().iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            keys,
            ["Filter.1.Name=vpc-id", "Filter.1.Value.1=vpc-1", "Filter.2.Name=group-name", "Filter.2.Value.1=web"]
        );
    }
}
