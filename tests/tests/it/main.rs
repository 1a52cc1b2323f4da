mod abi_layout;
mod store;
