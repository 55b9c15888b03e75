/** Version of both executables, reported in logs, metrics and IPRuleNodeState. */
export const VERSION = "0.1.0";
