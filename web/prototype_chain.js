// @ts-check
/**
 * One helper both extensions use to add behaviour to a LiteGraph node's prototype method without replacing
 * what ComfyUI or another extension put there.
 */

/**
 * Chain a prototype method: ``after`` runs after the original, with its ``this``.
 * @param {any} proto
 * @param {string} name
 * @param {(this: any, ...args: any[]) => void} after
 */
export function chain(proto, name, after) {
  const original = proto[name];
  proto[name] = function (/** @type {any[]} */ ...args) {
    const r = original?.apply(this, args);
    after.apply(this, args);
    return r;
  };
}
