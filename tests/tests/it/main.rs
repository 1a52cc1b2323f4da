mod abi_layout;
mod store;
mod hostile;
