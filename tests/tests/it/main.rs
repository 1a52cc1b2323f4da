mod abi_layout;
mod cli;
mod crash;
mod hostile;
mod hostile_cli;
mod license;
mod loading;
mod store;
