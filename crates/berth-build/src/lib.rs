//! Dockerfiles: the parser (`parser`, `shell`), the instruction model (`instructions`), and
//! the builder that turns a context and a Dockerfile into image layers with a cache.

pub mod builder;
pub mod context;
pub mod dockerignore;
pub mod host;
pub mod instructions;
pub mod parser;
pub mod shell;
