// Node's own tools on the contract tidings generates; driven by tests/tests/contracts_node.rs.
//
//   node contracts_check.js asyncapi <asyncapi.json>
//     parses the document with AsyncAPI's parser; prints { errors, warnings } (the
//     diagnostics of each severity, as "path: message") and exits 1 when there are errors
//   node contracts_check.js validate <schemas dir> <messages.json>
//     compiles each schemas/<event>.json with ajv (JSON Schema 2020-12, strict mode, every
//     error) and validates each message of messages.json ([{ event, payload }], payload as
//     the text the broker delivered); prints [{ event, valid, errors }]
const fs = require('fs');
const path = require('path');

function print(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

async function asyncapi(file) {
  const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, 'utf8'));
  const describe = (d) => `${d.path.join('/')}: ${d.message}`;
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map(describe);
  const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).map(describe);
  print({ errors, warnings, parsed: document !== undefined });
  if (errors.length > 0 || document === undefined) process.exit(1);
}

function validate(dir, messagesFile) {
  const Ajv2020 = require('ajv/dist/2020');
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  const validators = new Map();
  const messages = JSON.parse(fs.readFileSync(messagesFile, 'utf8'));
  const results = messages.map(({ event, payload }) => {
    if (!validators.has(event)) {
      const schema = JSON.parse(fs.readFileSync(path.join(dir, `${event}.json`), 'utf8'));
      validators.set(event, ajv.compile(schema));
    }
    const check = validators.get(event);
    const valid = check(JSON.parse(payload));
    return { event, valid, errors: (check.errors || []).map((e) => `${e.instancePath} ${e.message}`) };
  });
  print(results);
}

const [mode, ...args] = process.argv.slice(2);
Promise.resolve(mode === 'asyncapi' ? asyncapi(args[0]) : validate(args[0], args[1])).catch((error) => {
  console.error(error);
  process.exit(1);
});
