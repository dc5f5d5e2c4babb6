"""The framework shim: the Ryu/os-ken app, its OpenFlow message layer and the runtime compat."""
