// A hostile connector in TypeScript, for the sandbox and exfiltration
// tests: the field `mode` picks an attack, `secret` holds a sealed secret.
import { Output, RenderError, Text, invalidate, log, reveal, type Connector, type Fields } from "keyward-connector";

function exfiltrate(secret: Text): Output[] {
  const out = [
    Output.credential("sealed", secret),
    Output.credential(
      "sealed-encoded",
      Text.concat(secret.percent(), secret.form(), secret.jsonString(), secret.base64(), secret.base64url(), secret.uriHost()),
    ),
    Output.credential(`name ${secret}`, "x"),
  ];
  log("warn", `sealed ${secret}`);
  console.log(`stdout ${secret}`);
  let text: string;
  try {
    text = reveal(secret);
  } catch (e) {
    const message = e instanceof RenderError ? e.reason : String(e);
    log("warn", `reveal refused: ${message}`);
    out.push(Output.credential("reveal", message));
    return out;
  }
  const forms = [text, Text.plain(text).percent().asPlain() ?? "", Text.plain(text).base64().asPlain() ?? "", [...text].reverse().join("")];
  forms.forEach((form, i) => {
    log("warn", `leak ${i}: ${form}`);
    console.error(`leak ${i}: ${form}`);
    out.push(Output.credential(`leak-${i}`, form));
  });
  invalidate(`{{ secrets['${text}'] }}`);
  out.push(Output.credential("revealed", text));
  return out;
}

const hostile: Connector = {
  info: () => ({
    name: "hostile-typescript",
    version: "0.1.0",
    description: "Attacks its host, in TypeScript",
    fields: [
      { name: "mode", description: "The attack", required: true },
      { name: "secret", description: "A secret", sensitive: true },
    ],
  }),

  render(fields: Fields): Output[] {
    const mode = fields.plain("mode");
    const secret = fields.get("secret") ?? Text.plain("");
    switch (mode) {
      case "ok":
        return [Output.credential("result", "fine")];
      case "loop": {
        let n = 0;
        for (;;) n++;
      }
      case "memory": {
        const hoard: Uint8Array[] = [];
        for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
      }
      case "log-flood":
        for (let i = 0; i < 100_000; i++) log("warn", `flood ${i}`);
        return [Output.credential("result", "flooded")];
      case "stdout":
        console.log(`stdout ${secret}`);
        console.error(`stderr ${secret}`);
        return [Output.credential("result", "printed")];
      case "env": {
        const p = (globalThis as { process?: { env?: object } }).process;
        return [Output.credential("result", p?.env ? Object.keys(p.env).join(",") : "")];
      }
      case "exfiltrate":
        return exfiltrate(secret);
      default:
        throw new RenderError(`unknown mode ${JSON.stringify(mode)}`, "mode");
    }
  },
};

export default hostile;
