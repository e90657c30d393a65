//! End-to-end tests over real WebSockets against an in-process server with a real
//! SQLite file. One module per area; helpers in `harness`.

mod harness;

mod agents;
mod auth;
mod catalogue;
mod hostile;
mod limits;
mod messaging;
mod model;
mod permissions;
mod persistence;
mod privacy_race;
mod rooms;
mod wire;
