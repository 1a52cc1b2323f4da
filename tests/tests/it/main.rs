mod abi_layout;
mod loading;
mod store;
mod crash;
mod hostile;
mod license;
mod loading;
