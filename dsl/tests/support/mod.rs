//! What more than one of the language's test files uses.

#![allow(dead_code)]

pub mod generate;
