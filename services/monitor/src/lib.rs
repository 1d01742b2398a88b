pub mod engine;
pub mod rules;
pub mod window;
