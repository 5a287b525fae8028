/**
 * The Controller service of a node-only plugin: it offers no controller RPC, and says so when
 * asked. Tools that probe controller capabilities on whatever socket they are given (csi-sanity
 * does, on the node socket when no controller endpoint is set) then skip controller features
 * instead of failing on UNIMPLEMENTED; every other controller RPC stays UNIMPLEMENTED.
 */
export const nodeOnlyController = {
  ControllerGetCapabilities(): Promise<object> {
    return Promise.resolve({ capabilities: [] });
  },
};
