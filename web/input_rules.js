// @ts-check
/**
 * Which inputs of a node are ignored by its current choices (pure: tests/web/input_rules.test.mjs).
 *
 * Why: a widget a preset ignores still shows a value the run will not use ("warmup 5" under preset paper), which an
 * artist reads as a setting. The rules are declared once in the Python core (presets.PRESET_INPUTS,
 * keyframes.STRATEGY_INPUTS, asymrnr.sources.SOURCE_INPUTS) and reach the frontend in the node definition: a combo
 * input's ``rhymeflow_uses`` maps each option to the inputs it reads, an optional socket's ``rhymeflow_overrides``
 * lists the widgets it replaces while connected (nodes/common.py). web/rhymeflow_inputs.js hides what this module
 * says is ignored.
 *
 * ComfyUI imports every .js under web/ as an extension; importing this module has no side effects.
 */

/**
 * @typedef {object} InputRules
 * @property {Record<string, Record<string, string[]>>} uses combo input -> option -> inputs that option reads
 * @property {Record<string, string[]>} overrides socket input -> widget inputs it replaces while connected
 */

/**
 * The rules a node definition (``/object_info``'s V1 shape, as ``beforeRegisterNodeDef`` gets it) declares.
 * @param {any} nodeData
 * @returns {InputRules}
 */
export function rulesFromNodeDef(nodeData) {
  /** @type {InputRules} */
  const rules = { uses: {}, overrides: {} };
  for (const group of ["required", "optional"]) {
    for (const [name, spec] of Object.entries(nodeData?.input?.[group] ?? {})) {
      const options = Array.isArray(spec) ? spec[1] : undefined;
      if (options?.rhymeflow_uses && typeof options.rhymeflow_uses === "object") rules.uses[name] = options.rhymeflow_uses;
      if (Array.isArray(options?.rhymeflow_overrides)) rules.overrides[name] = options.rhymeflow_overrides;
    }
  }
  return rules;
}

/**
 * Inputs ignored under the current ``values`` (widget name -> value) and ``connected`` sockets: for each rule
 * combo, the inputs some option reads but the selected one does not; and the widgets a connected socket replaces.
 * Inputs no rule mentions are never ignored.
 * @param {InputRules} rules
 * @param {Record<string, unknown>} values
 * @param {Set<string>} connected
 * @returns {Set<string>}
 */
export function ignoredInputs(rules, values, connected) {
  /** @type {Set<string>} */
  const out = new Set();
  for (const [combo, table] of Object.entries(rules.uses)) {
    const selected = new Set(table[String(values[combo])] ?? []);
    for (const names of Object.values(table)) for (const n of names) if (!selected.has(n)) out.add(n);
  }
  for (const [socket, names] of Object.entries(rules.overrides)) {
    if (connected.has(socket)) for (const n of names) out.add(n);
  }
  return out;
}
