mod abi_layout;
mod loading;
mod store;
