mod abi_layout;
mod store;
mod crash;
mod hostile;
mod license;
mod loading;
