mod abi_layout;
mod crash;
mod hostile;
mod license;
mod loading;
mod store;
