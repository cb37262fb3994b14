//! The resource types of the `aws` provisioner: their attributes (with the
//! checks AWS would make, done before any call), outputs and descriptions.

use serde_json::{Map, Value};

use crate::attrs::{AttrDef, Dflt, Ty, TypeDef, UNKNOWN, diag};
use stackpipe_plugin_sdk::types::Diagnostic;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vpc,
    Subnet,
    SecurityGroup,
    DbSubnetGroup,
    DbInstance,
    LoadBalancer,
    Certificate,
    DnsZone,
    DnsRecord,
    S3Bucket,
    S3Object,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Vpc,
        Kind::Subnet,
        Kind::SecurityGroup,
        Kind::DbSubnetGroup,
        Kind::DbInstance,
        Kind::LoadBalancer,
        Kind::Certificate,
        Kind::DnsZone,
        Kind::DnsRecord,
        Kind::S3Bucket,
        Kind::S3Object,
    ];

    /// `vpc` or `aws.vpc`. (The plugin finds types through the SDK.)
    #[cfg(test)]
    pub fn parse(kind: &str) -> Result<Kind, String> {
        let bare = kind.strip_prefix("aws.").unwrap_or(kind);
        Kind::ALL.into_iter().find(|k| k.def().name == bare).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.def().name).collect();
            format!("unknown resource type `{kind}`: the aws plugin handles {}", names.join(", "))
        })
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    pub fn def(self) -> &'static TypeDef {
        match self {
            Kind::Vpc => &VPC,
            Kind::Subnet => &SUBNET,
            Kind::SecurityGroup => &SECURITY_GROUP,
            Kind::DbSubnetGroup => &DB_SUBNET_GROUP,
            Kind::DbInstance => &DB_INSTANCE,
            Kind::LoadBalancer => &LOAD_BALANCER,
            Kind::Certificate => &CERTIFICATE,
            Kind::DnsZone => &DNS_ZONE,
            Kind::DnsRecord => &DNS_RECORD,
            Kind::S3Bucket => &S3_BUCKET,
            Kind::S3Object => &S3_OBJECT,
        }
    }
}

/// The master password of a database whose pipeline sets none. Fixed, so
/// that plans stay stable; set `master_password` for anything real.
pub const DEFAULT_DB_PASSWORD: &str = "Sp7-kq2vX9-mT4wLr8Zc";

const fn attr(name: &'static str, ty: Ty, doc: &'static str) -> AttrDef {
    AttrDef { name, ty, required: false, default: Dflt::None, replace: false, computed: false, doc }
}

const fn required(name: &'static str, ty: Ty, doc: &'static str) -> AttrDef {
    AttrDef { name, ty, required: true, default: Dflt::None, replace: false, computed: false, doc }
}

const fn replacing(mut a: AttrDef) -> AttrDef {
    a.replace = true;
    a
}

const fn with_default(mut a: AttrDef, default: Dflt) -> AttrDef {
    a.default = default;
    a
}

const TAGS: AttrDef = with_default(attr("tags", Ty::Map, "Tags, applied with CreateTags/DeleteTags."), Dflt::EmptyMap);
const NET: Ty = Ty::Cidr { min: 16, max: 28 };

fn prefixed(prefix: &'static str, s: &str) -> Result<String, String> {
    if s.starts_with(prefix) && s.len() > prefix.len() {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not an id like `{prefix}0123456789abcdef0`"))
    }
}

fn vpc_id(s: &str) -> Result<String, String> {
    prefixed("vpc-", s)
}

/// RDS names (instance identifiers, subnet group names) are stored in lower
/// case: a name with capitals would show as changed at every refresh.
fn lower_case(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("AWS keeps {what} in lower case: write `{}`", s.to_ascii_lowercase()));
    }
    Ok(())
}

fn db_identifier(s: &str) -> Result<String, String> {
    lower_case("DB instance identifiers", s)?;
    let ok = (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a DB instance identifier: 1 to 63 letters, digits or hyphens, starting with a letter, \
             without two hyphens in a row or one at the end"
        ))
    }
}

fn db_subnet_group_name(s: &str) -> Result<String, String> {
    lower_case("DB subnet group names", s)?;
    let ok = (1..=255).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ' ' | '-'))
        && s != "default";
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a DB subnet group name: up to 255 letters, digits, periods, underscores, spaces or hyphens, \
             and not `default`"
        ))
    }
}

fn db_instance_class(s: &str) -> Result<String, String> {
    if s.starts_with("db.") && s.len() > 3 {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not a DB instance class like `db.t3.micro`"))
    }
}

fn db_username(s: &str) -> Result<String, String> {
    let ok = (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(s.to_string()) } else { Err("1 to 63 letters, digits or underscores, starting with a letter".into()) }
}

fn db_password(s: &str) -> Result<(), String> {
    let ok = (8..=128).contains(&s.len()) && s.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '"' | '@'));
    if ok {
        Ok(())
    } else {
        // Never echo the value: it is a secret.
        Err("must be 8 to 128 printable ASCII characters, without spaces, `/`, `\"` or `@`".into())
    }
}

fn sg_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 {
        return Err("must be 1 to 255 characters".into());
    }
    if s.to_ascii_lowercase().starts_with("sg-") {
        return Err(format!("`{s}`: a security group name cannot start with `sg-`"));
    }
    Ok(s.to_string())
}

fn sg_description(s: &str) -> Result<String, String> {
    if s.len() > 255 || !s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return Err("must be at most 255 printable ASCII characters".into());
    }
    Ok(s.to_string())
}

fn lb_name(s: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.starts_with("internal-");
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a load balancer name: 1 to 32 letters, digits or hyphens, not starting or ending with a \
             hyphen, nor with `internal-`"
        ))
    }
}

/// A DNS name in canonical form: lower case, without the final dot. Route53
/// writes `*` as `\052`.
pub fn canonical_domain(s: &str) -> String {
    s.trim_end_matches('.').replace("\\052", "*").to_ascii_lowercase()
}

fn domain(s: &str) -> Result<String, String> {
    let d = canonical_domain(s);
    let labels: Vec<&str> = d.split('.').collect();
    let label_ok = |(i, l): (usize, &&str)| {
        (*l == "*" && i == 0)
            || (!l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !l.starts_with('-')
                && !l.ends_with('-'))
    };
    if d.is_empty() || d.len() > 253 || !labels.iter().enumerate().all(label_ok) {
        return Err(format!("`{s}` is not a DNS name like `app.example.com`"));
    }
    Ok(d)
}

/// A hosted zone id without Route53's `/hostedzone/` prefix.
pub fn canonical_zone_id(s: &str) -> String {
    s.trim_start_matches("/hostedzone/").to_string()
}

fn zone_id(s: &str) -> Result<String, String> {
    let id = canonical_zone_id(s);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("`{s}` is not a hosted zone id like `Z0123456789ABCDEFGHIJ`"));
    }
    Ok(id)
}

pub static VPC: TypeDef = TypeDef {
    name: "vpc",
    description: "An EC2 VPC. A new `cidr_block` replaces it; `tags` change in place. Destroy fails while it still has \
        subnets or other dependents (DependencyViolation).",
    attrs: &[replacing(required("cidr_block", NET, "The VPC's IPv4 block.")), TAGS],
    outputs: &[
        ("id", "string", "The VPC id (`vpc-...`)."),
        ("arn", "string", "arn:aws:ec2:REGION:ACCOUNT:vpc/ID"),
        ("cidr_block", "string", "The VPC's IPv4 block."),
    ],
    kept_on_update: &["id", "arn", "cidr_block"],
    check: None,
};

pub static SUBNET: TypeDef = TypeDef {
    name: "subnet",
    description: "An EC2 subnet of a VPC. A new `vpc_id`, `cidr_block` or `availability_zone` replaces it (the old \
        one is deleted first: the blocks may overlap); `public` (MapPublicIpOnLaunch) and `tags` change in place.",
    attrs: &[
        replacing(required("vpc_id", Ty::Checked(vpc_id), "The VPC the subnet is in.")),
        replacing(required("cidr_block", NET, "The subnet's IPv4 block, inside the VPC's.")),
        replacing(attr("availability_zone", Ty::Str, "Like `us-east-1a`; AWS picks one when not set.")),
        with_default(
            attr("public", Ty::Bool, "Give instances launched in it a public IP (MapPublicIpOnLaunch)."),
            Dflt::Bool(false),
        ),
        TAGS,
    ],
    outputs: &[
        ("id", "string", "The subnet id (`subnet-...`)."),
        ("arn", "string", "The subnet's ARN."),
        ("vpc_id", "string", "The VPC it is in."),
        ("cidr_block", "string", "Its IPv4 block."),
        ("availability_zone", "string", "Its availability zone."),
    ],
    kept_on_update: &["id", "arn", "vpc_id", "cidr_block", "availability_zone"],
    check: None,
};

pub static SECURITY_GROUP: TypeDef = TypeDef {
    name: "security_group",
    description: "An EC2 security group in a VPC with IPv4 ingress rules. A new `vpc_id`, `name` or `description` \
        replaces it; `ingress` rules are authorized and revoked in place. Egress is left as AWS makes it (all \
        allowed). Rules that are not IPv4 CIDR rules are not managed.",
    attrs: &[
        replacing(required("vpc_id", Ty::Checked(vpc_id), "The VPC the group is in.")),
        replacing(required("name", Ty::Checked(sg_name), "The group's name, unique in the VPC.")),
        replacing(with_default(
            attr("description", Ty::Checked(sg_description), "The group's description."),
            Dflt::Str("managed by stackpipe"),
        )),
        with_default(
            attr("ingress", Ty::Ingress, "Ingress rules: `ingress { protocol from_port to_port cidr }` blocks."),
            Dflt::EmptyList,
        ),
    ],
    outputs: &[
        ("id", "string", "The group id (`sg-...`)."),
        ("arn", "string", "The group's ARN."),
        ("name", "string", "The group's name."),
    ],
    kept_on_update: &["id", "arn", "name"],
    check: None,
};

pub static DB_SUBNET_GROUP: TypeDef = TypeDef {
    name: "db_subnet_group",
    description: "An RDS DB subnet group. A new `name` replaces it; `subnet_ids` and `description` change in place \
        (ModifyDBSubnetGroup). Real AWS wants subnets in at least two availability zones.",
    attrs: &[
        replacing(required("name", Ty::Checked(db_subnet_group_name), "The group's name (lower case).")),
        required("subnet_ids", Ty::List { set: true, min: 1 }, "The subnets (`subnet-...`)."),
        with_default(attr("description", Ty::Str, "The group's description."), Dflt::Str("managed by stackpipe")),
    ],
    outputs: &[
        ("id", "string", "The group's name."),
        ("name", "string", "The group's name."),
        ("arn", "string", "The group's ARN."),
    ],
    kept_on_update: &["id", "name", "arn"],
    check: None,
};

pub static DB_INSTANCE: TypeDef = TypeDef {
    name: "db_instance",
    description: "An RDS DB instance. Apply waits until it is available. A new `identifier`, `engine`, \
        `db_subnet_group` or `master_username` replaces it (deleting the old one first, without a final \
        snapshot); `instance_class`, `allocated_storage`, `security_groups` and `master_password` change in place \
        (ModifyDBInstance, ApplyImmediately). The password is kept only as a digest and never output. Destroy \
        skips the final snapshot and waits until the instance is gone.",
    attrs: &[
        replacing(required("identifier", Ty::Checked(db_identifier), "The instance identifier (lower case).")),
        replacing(required("engine", Ty::Str, "`postgres`, `mysql`, `mariadb`...")),
        required("instance_class", Ty::Checked(db_instance_class), "Like `db.t3.micro`."),
        required("allocated_storage", Ty::Int { min: 5, max: 65536 }, "Storage in GiB."),
        replacing(attr("db_subnet_group", Ty::Str, "The DB subnet group's name; the default VPC's when not set.")),
        attr(
            "security_groups",
            Ty::List { set: true, min: 0 },
            "VPC security group ids; the VPC's default group when not set.",
        ),
        replacing(with_default(
            attr("master_username", Ty::Checked(db_username), "The master user's name (cannot be changed in place)."),
            Dflt::Str("stackpipe"),
        )),
        with_default(
            attr(
                "master_password",
                Ty::Secret(db_password),
                "The master user's password (secret). Set it: the default is a fixed, published value.",
            ),
            Dflt::Str(DEFAULT_DB_PASSWORD),
        ),
    ],
    outputs: &[
        ("id", "string", "The instance identifier."),
        ("arn", "string", "The instance's ARN."),
        ("endpoint", "string", "`address:port`."),
        ("address", "string", "The host name to connect to."),
        ("port", "integer", "The port to connect to."),
    ],
    kept_on_update: &["id", "arn", "endpoint", "address", "port"],
    check: None,
};

pub static LOAD_BALANCER: TypeDef = TypeDef {
    name: "load_balancer",
    description: "An Elastic Load Balancing v2 load balancer (application, network or gateway). A new `name`, `type` \
        or `scheme` replaces it; `subnets` (SetSubnets) and `security_groups` (SetSecurityGroups) change in place.",
    attrs: &[
        replacing(required("name", Ty::Checked(lb_name), "The load balancer's name, unique in the region.")),
        replacing(with_default(
            attr("type", Ty::Enum(&["application", "network", "gateway"]), "Its type."),
            Dflt::Str("application"),
        )),
        required(
            "subnets",
            Ty::List { set: true, min: 1 },
            "Subnet ids; AWS wants two availability zones or more for an application load balancer.",
        ),
        attr(
            "security_groups",
            Ty::List { set: true, min: 0 },
            "Security group ids; AWS picks the VPC's default when not set.",
        ),
        replacing(with_default(
            attr("scheme", Ty::Enum(&["internet-facing", "internal"]), "Its scheme."),
            Dflt::Str("internet-facing"),
        )),
    ],
    outputs: &[
        ("id", "string", "The load balancer's ARN."),
        ("arn", "string", "The load balancer's ARN."),
        ("dns_name", "string", "Its DNS name."),
        ("zone_id", "string", "The Route53 hosted zone id of its DNS name (for alias records)."),
    ],
    kept_on_update: &["id", "arn", "dns_name", "zone_id"],
    check: None,
};

pub static CERTIFICATE: TypeDef = TypeDef {
    name: "certificate",
    description: "An ACM certificate request. A new `domain_name` or `validation_method` replaces it. Apply does not \
        wait for validation: the `status` output is refreshed by each read (PENDING_VALIDATION, then ISSUED).",
    attrs: &[
        replacing(required("domain_name", Ty::Checked(domain), "The certificate's domain name.")),
        replacing(with_default(
            attr("validation_method", Ty::Enum(&["DNS", "EMAIL"]), "How the domain is validated."),
            Dflt::Str("DNS"),
        )),
    ],
    outputs: &[
        ("id", "string", "The certificate's ARN."),
        ("arn", "string", "The certificate's ARN."),
        ("status", "string", "PENDING_VALIDATION, ISSUED, ..."),
        ("domain_name", "string", "The certificate's domain name."),
    ],
    kept_on_update: &["id", "arn", "domain_name"],
    check: None,
};

pub static DNS_ZONE: TypeDef = TypeDef {
    name: "dns_zone",
    description: "A Route53 public hosted zone. A new `name` replaces it; `comment` changes in place. Destroy fails \
        while it holds records other than its NS and SOA (HostedZoneNotEmpty).",
    attrs: &[
        replacing(required("name", Ty::Checked(domain), "The zone's domain name.")),
        with_default(attr("comment", Ty::Text, "A comment on the zone."), Dflt::Str("")),
    ],
    outputs: &[
        ("id", "string", "The zone id, without the `/hostedzone/` prefix."),
        ("name", "string", "The zone's domain name."),
        ("name_servers", "array", "The zone's name servers."),
    ],
    kept_on_update: &["id", "name", "name_servers"],
    check: None,
};

pub static DNS_RECORD: TypeDef = TypeDef {
    name: "dns_record",
    description: "A Route53 record set (simple routing, no alias). `name` is a full name or one relative to the \
        zone. A new `zone_id`, `name` or `type` replaces it; `ttl` and `records` change in place (UPSERT).",
    attrs: &[
        replacing(required("zone_id", Ty::Checked(zone_id), "The hosted zone id.")),
        replacing(required("name", Ty::Checked(domain), "The record's name.")),
        replacing(required(
            "type",
            Ty::Enum(&["A", "AAAA", "CAA", "CNAME", "DS", "MX", "NAPTR", "NS", "PTR", "SOA", "SPF", "SRV", "TXT"]),
            "The record type.",
        )),
        with_default(attr("ttl", Ty::Int { min: 0, max: 2_147_483_647 }, "Time to live, in seconds."), Dflt::Int(300)),
        required("records", Ty::List { set: true, min: 1 }, "The values."),
    ],
    outputs: &[
        ("id", "string", "`ZONE_NAME_TYPE`"),
        ("name", "string", "The record's name, as given."),
        ("fqdn", "string", "The record's full name."),
    ],
    kept_on_update: &["id", "name", "fqdn"],
    check: Some(check_record),
};

fn check_record(attrs: &Map<String, Value>) -> Vec<Diagnostic> {
    let known = |k: &str| attrs.get(k).filter(|v| v.as_str() != Some(UNKNOWN));
    let cname = known("type").and_then(Value::as_str) == Some("CNAME");
    let count = known("records").and_then(Value::as_array).map(Vec::len);
    match count {
        Some(n) if cname && n != 1 => vec![diag("records", format!("a CNAME record has exactly one value, not {n}"))],
        _ => Vec::new(),
    }
}

/// S3's bucket naming rules (general purpose buckets): what CreateBucket
/// would refuse, refused at check time.
fn bucket_name(s: &str) -> Result<String, String> {
    let rules = "3 to 63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit";
    let ok = |s: &str| {
        (3..=63).contains(&s.len())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if !ok(s) {
        // Capitals alone: say how to write it.
        if ok(&s.to_ascii_lowercase()) {
            lower_case("bucket names", s)?;
        }
        return Err(format!("`{s}` is not a bucket name: {rules}"));
    }
    if s.contains("..") {
        return Err(format!("`{s}`: a bucket name cannot have two dots in a row"));
    }
    if s.split('.').count() == 4 && s.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err(format!("`{s}`: a bucket name cannot look like an IP address"));
    }
    if let Some(p) = ["xn--", "sthree-", "amzn-s3-demo-"].iter().find(|p| s.starts_with(*p)) {
        return Err(format!("`{s}`: bucket names starting with `{p}` are reserved"));
    }
    if let Some(p) = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"].iter().find(|p| s.ends_with(*p)) {
        return Err(format!("`{s}`: bucket names ending with `{p}` are reserved"));
    }
    Ok(s.to_string())
}

/// An object key: 1 to 1024 bytes. A leading `/` is refused: it is almost
/// always a mistake (the key would start with an empty path segment).
fn object_key(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 1024 {
        return Err(format!("must be 1 to 1024 bytes, not {}", s.len()));
    }
    if s.starts_with('/') {
        return Err(format!("`{s}` starts with `/`: write `{}`", s.trim_start_matches('/')));
    }
    if s.chars().any(char::is_control) {
        return Err("must not hold control characters".into());
    }
    Ok(s.to_string())
}

/// S3 takes at most 50 tags on a bucket, keys up to 128 characters, values up to 256.
fn check_bucket(attrs: &Map<String, Value>) -> Vec<Diagnostic> {
    let Some(Value::Object(tags)) = attrs.get("tags") else { return Vec::new() };
    let mut out = Vec::new();
    if tags.len() > 50 {
        out.push(diag("tags", format!("S3 takes at most 50 tags on a bucket, not {}", tags.len())));
    }
    for (k, v) in tags {
        let long_value = v.as_str().is_some_and(|v| v.chars().count() > 256);
        if k.chars().count() > 128 || long_value {
            out.push(diag("tags", format!("`tags.{k}`: keys are up to 128 characters, values up to 256")));
        }
    }
    out
}

/// Exactly one of `source` and `content`; metadata that S3 gives back as
/// written (lower-case keys that are HTTP header names, printable ASCII
/// values), so that a plan compares like with like.
fn check_object(attrs: &Map<String, Value>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    match (attrs.contains_key("source"), attrs.contains_key("content")) {
        (true, true) => out.push(diag("content", "set `source` (a file) or `content` (a string), not both")),
        (false, false) => out.push(diag("source", "set `source` (a file to upload) or `content` (a string)")),
        _ => {}
    }
    if let Some(Value::Object(metadata)) = attrs.get("metadata") {
        for (k, v) in metadata {
            let name_ok = k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                out.push(diag("metadata", format!("`metadata.{k}`: keys are letters, digits, `-`, `_` or `.`")));
            } else if k.chars().any(|c| c.is_ascii_uppercase()) {
                let lower = k.to_ascii_lowercase();
                out.push(diag("metadata", format!("`metadata.{k}`: S3 keeps metadata keys in lower case: write `{lower}`")));
            }
            let value_ok = v.as_str().is_some_and(|v| v.chars().all(|c| c == ' ' || c.is_ascii_graphic()));
            if !value_ok && v.as_str() != Some(UNKNOWN) {
                out.push(diag("metadata", format!("`metadata.{k}`: values are printable ASCII (S3 sends them as headers)")));
            }
        }
    }
    out
}

pub static S3_BUCKET: TypeDef = TypeDef {
    name: "s3_bucket",
    description: "An S3 bucket (path-style requests to `config { endpoint }` or the region's S3 endpoint). A new \
        `bucket` replaces it; `tags` change in place (PutBucketTagging/DeleteBucketTagging). Destroy fails while it \
        holds objects, unless `force_destroy` is true: then every object (and every version) is deleted first.",
    attrs: &[
        replacing(required("bucket", Ty::Checked(bucket_name), "The bucket's name, unique across all of S3.")),
        with_default(attr("tags", Ty::Map, "Tags, applied with PutBucketTagging."), Dflt::EmptyMap),
        with_default(
            attr(
                "force_destroy",
                Ty::Bool,
                "Whether destroy deletes the objects left in the bucket (true) or fails (false). It is read from \
                 the state: deploy a change of it before an undeploy counts on it.",
            ),
            Dflt::Bool(false),
        ),
    ],
    outputs: &[
        ("id", "string", "The bucket's name."),
        ("bucket", "string", "The bucket's name."),
        ("arn", "string", "The bucket's ARN."),
        ("region", "string", "The region the bucket is in."),
    ],
    kept_on_update: &["id", "bucket", "arn", "region"],
    check: Some(check_bucket),
};

/// The largest object `aws.s3_object` uploads: one PutObject, the body in
/// memory. Bigger ones need a multipart upload, which it does not do.
pub const MAX_OBJECT_BYTES: u64 = 100 * 1024 * 1024;

pub static S3_OBJECT: TypeDef = TypeDef {
    name: "s3_object",
    description: "An object in an S3 bucket, uploaded with one PutObject (up to 100 MiB; no multipart upload) from \
        `source`, a file in a directory the pipeline grants the plugin, or from `content`. A plan compares the \
        body's sha256: new bytes, `content_type` or `metadata` upload it again in place; a new `bucket` or `key` \
        replaces it.",
    attrs: &[
        replacing(required("bucket", Ty::Checked(bucket_name), "The bucket's name.")),
        replacing(required("key", Ty::Checked(object_key), "The object's key (`releases/app-1.2.tar.gz`).")),
        attr(
            "source",
            Ty::InputFile,
            "A file to upload, relative to a directory in the plugin's allow { fs = [...] }. Not with `content`.",
        ),
        attr("content", Ty::Text, "The body, as a string. Not with `source`."),
        attr("content_type", Ty::Str, "The Content-Type; S3 picks `binary/octet-stream` when not set."),
        with_default(attr("metadata", Ty::Map, "User metadata (`x-amz-meta-*`), lower-case keys."), Dflt::EmptyMap),
        AttrDef {
            computed: true,
            ..attr("sha256", Ty::Str, "The sha256 (hex) of the body: what a plan compares.")
        },
    ],
    outputs: &[
        ("id", "string", "`bucket/key`."),
        ("bucket", "string", "The bucket's name."),
        ("key", "string", "The object's key."),
        ("etag", "string", "The object's ETag, without quotes."),
        ("version_id", "string", "The version PutObject made, in a versioned bucket; empty otherwise."),
        ("sha256", "string", "The sha256 (hex) of the body."),
        ("url", "string", "`s3://bucket/key`."),
    ],
    kept_on_update: &["id", "bucket", "key", "url"],
    check: Some(check_object),
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::attrs::normalize;

    fn norm(kind: Kind, v: Value) -> Result<Map<String, Value>, Vec<String>> {
        normalize(kind.def(), v.as_object().unwrap())
            .map_err(|d| d.into_iter().map(|d| format!("{}: {}", d.attribute.unwrap_or_default(), d.message)).collect())
    }

    #[test]
    fn kinds_parse_with_or_without_prefix() {
        assert_eq!(Kind::parse("aws.vpc").unwrap(), Kind::Vpc);
        assert_eq!(Kind::parse("dns_record").unwrap(), Kind::DnsRecord);
        assert_eq!(Kind::parse("aws.s3_object").unwrap(), Kind::S3Object);
        assert!(Kind::parse("aws.dynamodb_table").unwrap_err().contains("handles vpc, subnet"));
    }

    #[test]
    fn defaults_and_sets() {
        let m = norm(Kind::Subnet, json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24" })).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24", "public": false, "tags": {} })
        );
        let m = norm(Kind::LoadBalancer, json!({ "name": "web", "subnets": ["subnet-b", "subnet-a", "subnet-b"] }))
            .unwrap();
        assert_eq!(m["subnets"], json!(["subnet-a", "subnet-b"]));
        assert_eq!((m["type"].clone(), m["scheme"].clone()), (json!("application"), json!("internet-facing")));
        assert!(!m.contains_key("security_groups"));
        let m = norm(Kind::LoadBalancer, json!({ "name": "web", "subnets": ["s"], "type": "Network" })).unwrap();
        assert_eq!(m["type"], "network");
    }

    #[test]
    fn problems_name_their_attribute() {
        let e =
            norm(Kind::Vpc, json!({ "cidr_block": "10.0.0.0/8", "tags": { "a": [1] }, "colour": "red" })).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("cidr_block: `cidr_block`: `10.0.0.0/8`: the prefix length must be between /16 and /28")
        );
        assert!(e[1].starts_with("tags: `tags.a` must be a string"));
        assert!(e[2].starts_with("colour: unknown attribute `colour` of vpc"));
        let e = norm(
            Kind::DbInstance,
            json!({ "identifier": "App", "engine": "postgres", "instance_class": "t3", "allocated_storage": 2.5 }),
        )
        .unwrap_err();
        let attrs: Vec<&str> = e.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(attrs, ["identifier", "instance_class", "allocated_storage"]);
        assert!(e[0].contains("write `app`"));
        assert_eq!(
            norm(Kind::Subnet, json!({})).unwrap_err(),
            ["vpc_id: `vpc_id` is required", "cidr_block: `cidr_block` is required"]
        );
        assert!(
            norm(Kind::Subnet, json!({ "vpc_id": "subnet-1", "cidr_block": "10.0.1.0/24" })).unwrap_err()[0]
                .contains("vpc-")
        );
    }

    #[test]
    fn unknown_values_pass_through() {
        let m = norm(Kind::Subnet, json!({ "vpc_id": UNKNOWN, "cidr_block": "10.0.1.0/24" })).unwrap();
        assert_eq!(m["vpc_id"], UNKNOWN);
        let m = norm(Kind::DbSubnetGroup, json!({ "name": "db-dev", "subnet_ids": [UNKNOWN, "subnet-1"] })).unwrap();
        assert_eq!(m["subnet_ids"], UNKNOWN);
        let m =
            norm(Kind::DnsRecord, json!({ "zone_id": UNKNOWN, "name": "a.b", "type": "CNAME", "records": UNKNOWN }))
                .unwrap();
        assert_eq!(m["records"], UNKNOWN);
    }

    #[test]
    fn ingress_rules_normalize() {
        let m = norm(
            Kind::SecurityGroup,
            json!({ "vpc_id": "vpc-1", "name": "web", "ingress": [
                { "protocol": "TCP", "from_port": 5432, "to_port": 5432.0, "cidr": "10.0.0.0/16" },
                { "protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0" },
                { "protocol": "all", "cidr": "10.0.0.0/16" },
                { "protocol": "6", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0" }
            ] }),
        )
        .unwrap();
        assert_eq!(m["description"], "managed by stackpipe");
        assert_eq!(
            m["ingress"],
            json!([
                { "protocol": "-1", "from_port": -1, "to_port": -1, "cidr": "10.0.0.0/16" },
                { "protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0" },
                { "protocol": "tcp", "from_port": 5432, "to_port": 5432, "cidr": "10.0.0.0/16" }
            ])
        );
        let one = norm(Kind::SecurityGroup, json!({ "vpc_id": "vpc-1", "name": "w", "ingress": { "protocol": "udp", "from_port": 53, "to_port": 53, "cidr": "10.0.0.0/8" } })).unwrap();
        assert_eq!(one["ingress"].as_array().map(Vec::len), Some(1));
        for (rule, want) in [
            (json!({ "protocol": "tcp", "cidr": "0.0.0.0/0" }), "from_port and to_port are required"),
            (json!({ "protocol": "tcp", "from_port": 90, "to_port": 80, "cidr": "0.0.0.0/0" }), "from_port <= to_port"),
            (json!({ "protocol": "gre", "cidr": "0.0.0.0/0" }), "protocol must be tcp, udp, icmp or all"),
            (json!({ "protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "10.0.0.1/8" }), "host bits"),
            (
                json!({ "protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "0.0.0.0/0", "cidrs": [] }),
                "unknown key `cidrs`",
            ),
            (json!({ "protocol": "-1", "from_port": 1, "cidr": "0.0.0.0/0" }), "takes no ports"),
        ] {
            let e =
                norm(Kind::SecurityGroup, json!({ "vpc_id": "vpc-1", "name": "w", "ingress": [rule] })).unwrap_err();
            assert!(e[0].contains(want), "{e:?} should say {want}");
        }
    }

    #[test]
    fn secrets_are_digested() {
        let base = json!({ "identifier": "app", "engine": "postgres", "instance_class": "db.t3.micro", "allocated_storage": 20 });
        let m = norm(Kind::DbInstance, base.clone()).unwrap();
        let digest = m["master_password"].as_str().unwrap();
        assert!(digest.starts_with("sha256:") && !digest.contains(DEFAULT_DB_PASSWORD));
        let mut with = base.clone();
        with["master_password"] = json!("another-Secret1");
        assert_ne!(norm(Kind::DbInstance, with.clone()).unwrap()["master_password"], m["master_password"]);
        with["master_password"] = json!("short");
        let e = norm(Kind::DbInstance, with).unwrap_err();
        assert!(e[0].starts_with("master_password:") && !e[0].contains("short"));
    }

    #[test]
    fn dns_names_and_records() {
        let m = norm(Kind::DnsZone, json!({ "name": "Dev.Example.Internal." })).unwrap();
        assert_eq!((m["name"].clone(), m["comment"].clone()), (json!("dev.example.internal"), json!("")));
        let m = norm(
            Kind::DnsRecord,
            json!({ "zone_id": "/hostedzone/Z1", "name": "*.a.b", "type": "cname", "records": ["x"] }),
        )
        .unwrap();
        assert_eq!(
            (m["zone_id"].clone(), m["type"].clone(), m["ttl"].clone()),
            (json!("Z1"), json!("CNAME"), json!(300))
        );
        let e =
            norm(Kind::DnsRecord, json!({ "zone_id": "Z1", "name": "a.b", "type": "CNAME", "records": ["x", "y"] }))
                .unwrap_err();
        assert_eq!(e, ["records: a CNAME record has exactly one value, not 2"]);
        assert!(norm(Kind::DnsZone, json!({ "name": "a..b" })).is_err());
        assert!(norm(Kind::Certificate, json!({ "domain_name": "-a.b" })).is_err());
        assert_eq!(canonical_domain("\\052.Example.com."), "*.example.com");
    }

    #[test]
    fn names_follow_aws_rules() {
        assert!(lb_name("web-dev").is_ok());
        for bad in ["-web", "web-", "internal-web", "a_b", "abcdefghijabcdefghijabcdefghijabc"] {
            assert!(lb_name(bad).is_err(), "{bad}");
        }
        assert!(db_identifier("app-dev").is_ok());
        for bad in ["1app", "app--dev", "app-", "app_dev", ""] {
            assert!(db_identifier(bad).is_err(), "{bad}");
        }
        assert!(db_subnet_group_name("default").is_err());
        assert!(sg_name("sg-web").is_err());
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["app-artifacts", "a.b-c.1", "abc"] {
            assert_eq!(bucket_name(good).as_deref(), Ok(good));
        }
        for (bad, says) in [
            ("ab", "3 to 63"),
            ("App", "write `app`"),
            ("a_b", "3 to 63"),
            ("-ab", "starting and ending"),
            ("a..b", "two dots"),
            ("192.168.1.1", "IP address"),
            ("xn--abc", "reserved"),
            ("logs-s3alias", "reserved"),
        ] {
            let e = bucket_name(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(object_key("/a").unwrap_err().contains("write `a`"));
        assert!(object_key("").is_err());
    }

    #[test]
    fn objects_take_a_source_or_a_content_and_plain_metadata() {
        let m = norm(Kind::S3Object, json!({ "bucket": "b-1", "key": "k", "source": "./dist/app.tgz" })).unwrap();
        assert_eq!(Value::Object(m), json!({ "bucket": "b-1", "key": "k", "source": "dist/app.tgz", "metadata": {} }));
        let e = norm(Kind::S3Object, json!({ "bucket": "b-1", "key": "k" })).unwrap_err();
        assert_eq!(e, ["source: set `source` (a file to upload) or `content` (a string)"]);
        let e = norm(Kind::S3Object, json!({ "bucket": "b-1", "key": "k", "source": "a", "content": "x" })).unwrap_err();
        assert!(e[0].contains("not both"), "{e:?}");
        let e = norm(
            Kind::S3Object,
            json!({ "bucket": "b-1", "key": "k", "content": "", "metadata": { "Build": "1", "a b": "2", "c": "\u{e9}" } }),
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().any(|d| d.contains("write `build`")), "{e:?}");
        let e = norm(Kind::S3Object, json!({ "bucket": "b-1", "key": "k", "content": "", "sha256": "x" })).unwrap_err();
        assert_eq!(e, ["sha256: `sha256` is worked out by the plugin: it cannot be set"]);
        assert!(norm(Kind::S3Object, json!({ "bucket": "b-1", "key": "k", "source": "/etc/passwd" })).is_err());
        let e = norm(Kind::S3Bucket, json!({ "bucket": "Bad-Name" })).unwrap_err();
        assert!(e[0].starts_with("bucket: `bucket`: AWS keeps bucket names in lower case: write `bad-name`"), "{e:?}");
        let e = norm(Kind::S3Bucket, json!({ "bucket": "Bad_Name" })).unwrap_err();
        assert!(e[0].starts_with("bucket: `bucket`: `Bad_Name` is not a bucket name: 3 to 63"), "{e:?}");
        let m = norm(Kind::S3Bucket, json!({ "bucket": "b-1" })).unwrap();
        assert_eq!(Value::Object(m), json!({ "bucket": "b-1", "tags": {}, "force_destroy": false }));
    }
}
