//! Who may approve an environment's gates, as the language says it:
//! `approvers = ["role:admin", "user:bob"]` and `self_approval = false` in
//! an `environment` block. The runtime holds each decision to the rule
//! (`runtime/src/run/gate.rs`); here are the names and what matches them.

use std::fmt;

/// A team member's role. Each includes the ones before it: an operator may
/// do what a viewer may, an admin what an operator may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [(&'static str, Role); 3] =
        [("viewer", Role::Viewer), ("operator", Role::Operator), ("admin", Role::Admin)];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn named(name: &str) -> Option<Role> {
        Role::ALL.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of `approvers`: `role:<role>` (anyone holding that role or a
/// higher one) or `user:<name>` (that user).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Approver {
    Role(Role),
    User(String),
}

/// Why a text is not an approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAnApprover {
    /// Neither `role:` nor `user:` before it (the prefix written, if any).
    UnknownPrefix(Option<String>),
    UnknownRole(String),
    /// `user:` with no name, or a name with blanks in it.
    BadUserName,
}

impl Approver {
    /// `role:<role>` or `user:<name>`.
    pub fn parse(text: &str) -> Result<Approver, NotAnApprover> {
        match text.split_once(':') {
            Some(("role", role)) => {
                Role::named(role).map(Approver::Role).ok_or_else(|| NotAnApprover::UnknownRole(role.into()))
            }
            Some(("user", name)) if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Err(NotAnApprover::BadUserName)
            }
            Some(("user", name)) => Ok(Approver::User(name.into())),
            Some((prefix, _)) => Err(NotAnApprover::UnknownPrefix(Some(prefix.into()))),
            None => Err(NotAnApprover::UnknownPrefix(None)),
        }
    }

    /// Whether `user`, holding `role`, is this approver.
    pub fn admits(&self, user: &str, role: Role) -> bool {
        match self {
            Approver::Role(wanted) => role >= *wanted,
            Approver::User(name) => name == user,
        }
    }
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Approver::Role(r) => write!(f, "role:{}", r.name()),
            Approver::User(u) => write!(f, "user:{u}"),
        }
    }
}

/// Who may decide the gates of one environment (its approval, its node
/// gates, its pauses, the approvals its policies ask for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Whom `approvers` names; empty: whoever may decide gates at all.
    pub approvers: Vec<Approver>,
    /// Whether the person who started a run may approve its gates.
    pub self_approval: bool,
}

impl Default for ApprovalRule {
    fn default() -> Self {
        ApprovalRule { approvers: Vec::new(), self_approval: true }
    }
}

impl ApprovalRule {
    /// Whether `approvers` admits `user`, holding `role`.
    pub fn admits(&self, user: &str, role: Role) -> bool {
        self.approvers.is_empty() || self.approvers.iter().any(|a| a.admits(user, role))
    }

    /// `role:admin or user:bob`, for messages.
    pub fn approvers_text(&self) -> String {
        let names: Vec<String> = self.approvers.iter().map(Approver::to_string).collect();
        match names.split_last() {
            None => "anyone".into(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvers_are_parsed_from_their_text() {
        assert_eq!(Approver::parse("role:operator"), Ok(Approver::Role(Role::Operator)));
        assert_eq!(Approver::parse("user:bob"), Ok(Approver::User("bob".into())));
        assert_eq!(Approver::parse("user:a:b"), Ok(Approver::User("a:b".into())));
        assert_eq!(Approver::parse("role:root"), Err(NotAnApprover::UnknownRole("root".into())));
        assert_eq!(Approver::parse("group:ops"), Err(NotAnApprover::UnknownPrefix(Some("group".into()))));
        assert_eq!(Approver::parse("bob"), Err(NotAnApprover::UnknownPrefix(None)));
        assert_eq!(Approver::parse("user:"), Err(NotAnApprover::BadUserName));
        assert_eq!(Approver::parse("user: bob"), Err(NotAnApprover::BadUserName));
        assert_eq!(Approver::Role(Role::Admin).to_string(), "role:admin");
    }

    #[test]
    fn a_role_admits_those_holding_it_or_a_higher_one() {
        let operator = Approver::Role(Role::Operator);
        assert!(!operator.admits("ann", Role::Viewer));
        assert!(operator.admits("ann", Role::Operator));
        assert!(operator.admits("ann", Role::Admin));
        assert!(Approver::User("bob".into()).admits("bob", Role::Viewer));
        assert!(!Approver::User("bob".into()).admits("bobby", Role::Admin));
    }

    #[test]
    fn a_rule_without_approvers_admits_anyone_and_names_them_all_otherwise() {
        assert!(ApprovalRule::default().admits("anyone", Role::Viewer));
        let rule = ApprovalRule {
            approvers: vec![Approver::Role(Role::Admin), Approver::User("bob".into()), Approver::User("eve".into())],
            self_approval: false,
        };
        assert!(!rule.admits("ann", Role::Operator));
        assert!(rule.admits("eve", Role::Viewer));
        assert_eq!(rule.approvers_text(), "role:admin, user:bob or user:eve");
    }
}
