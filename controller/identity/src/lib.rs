pub mod ca;
