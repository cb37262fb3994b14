//! Evaluating expressions at compile time, where no resource has been
//! applied: a value, nothing yet (it waits on a resource output), or a
//! mistake, reported once. An expression whose mistake is reported
//! elsewhere is not evaluated at all ([`Compiler::skip`]).

use serde_json::Value;

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::eval::{self, EvalError, Scope};

use super::Compiler;

impl<'a> Compiler<'a> {
    /// Evaluates `e` where no resource has been applied (every scope of the
    /// compiler is so), reporting its mistakes.
    pub(super) fn eval(&mut self, e: &Expr, scope: &Scope) -> Option<Value> {
        self.try_eval(e, scope).unwrap_or_else(|d| {
            self.diags.push(d);
            None
        })
    }

    /// [`Self::eval`], returning its mistake instead of reporting it.
    pub(super) fn try_eval(&self, e: &Expr, scope: &Scope) -> Result<Option<Value>, Diagnostic> {
        // What stops first at a resource output is unknown, and not a mistake.
        if self.skip(e) || eval::waits_first_on_output(e) {
            return Ok(None);
        }
        match eval::eval(e, scope) {
            Ok(v) => Ok(Some(v)),
            Err(EvalError::Unknown { .. }) => Ok(None),
            Err(EvalError::Invalid(d)) => Err(d),
        }
    }

    /// An expression not to evaluate, because the mistake that would stop it
    /// is reported elsewhere, once: it failed the reference checks, holds a
    /// literal that did not parse, or uses a var that has no (valid) value in
    /// this environment.
    pub(super) fn skip(&self, e: &Expr) -> bool {
        if !self.bad.is_empty() && self.bad.contains(&e.span) {
            return true;
        }
        if self.m.invalid.is_empty() && self.unavailable.is_empty() {
            return false;
        }
        let mut skip = false;
        e.walk(&mut |x| {
            if skip {
                return;
            }
            if self.m.invalid.contains(&x.span) {
                skip = true;
            } else if let ExprKind::Traversal { root, steps } = &x.kind {
                if let (true, Some(Step::Attr(name))) = (root.name == "var", steps.first()) {
                    skip = self.unavailable.iter().any(|u| *u == name.name);
                }
            }
        });
        skip
    }

    /// The value of `e`, which must be true or false; `what` names it in messages.
    pub(super) fn eval_bool(&mut self, e: &Expr, scope: &Scope, what: &str) -> Option<bool> {
        match self.eval(e, scope)? {
            Value::Bool(b) => Some(b),
            other => {
                self.diags.push(
                    Diagnostic::at(Code::TypeMismatch, e.span, format!("{what} must be true or false"))
                        .with_label(e.span, format!("a {}", eval::type_name(&other)))
                        .help({
                            let key = what.trim_matches('`');
                            match other.as_str() {
                                Some("true" | "yes" | "on") => format!("write `{key} = true`, without quotes"),
                                Some("false" | "no" | "off") => format!("write `{key} = false`, without quotes"),
                                _ => format!("write `{key} = true` or `{key} = false`"),
                            }
                        }),
                );
                None
            }
        }
    }
}
