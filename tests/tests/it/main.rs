mod abi_layout;
