mod abi_layout;
mod cli;
mod crash;
mod hostile;
mod license;
mod loading;
mod store;
