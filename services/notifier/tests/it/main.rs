mod alertmanager;
mod config;
mod delivery;
mod helpers;
mod marks;
mod start;
