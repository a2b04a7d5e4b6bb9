#!/usr/bin/env node
// validate.js -- offline Kubernetes schema validation of Tether's manifests.
//
//   node tests/deploy/validate.js <objects.json>
//
// objects.json (written by tests/deploy/k8s.py dump) is a list of
// {"source": "<file or rendered overlay>#<n>", "object": {...}}. Each object is
// checked twice:
//   1. kubernetes-models (the Kubernetes OpenAPI schemas compiled to
//      validators): types, required fields, enums, formats;
//   2. strictly for unknown fields, which those schemas let through: every key
//      must be a property of its type, walking the TypeScript declarations the
//      package ships (a misspelt `readinesProbe` would otherwise be silently
//      ignored by the API server and by the validator).
// Prints one line per object and a final "N passed, N failed"; exits 1 on
// any failure.
"use strict";

const fs = require("fs");
const path = require("path");

const MODELS = path.dirname(require.resolve("kubernetes-models/package.json"));
const APIMACHINERY = path.dirname(require.resolve("@kubernetes-models/apimachinery/package.json"));

// ---- schema validation (kubernetes-models) ------------------------------------------

function modelDir(apiVersion) {
  // "v1" -> v1, "apps/v1" -> apps/v1, "networking.k8s.io/v1" -> networking.k8s.io/v1
  return apiVersion;
}

function loadModel(obj) {
  const file = path.join(MODELS, modelDir(obj.apiVersion), obj.kind + ".js");
  if (!fs.existsSync(file)) return null;
  return require(file)[obj.kind];
}

// ---- unknown fields (from the .d.ts declarations) -----------------------------------

const typeCache = new Map(); // "<file>#<name>" -> {props: Map(name -> type text), file}

function resolveImport(fromFile, spec) {
  if (spec.startsWith(".")) return path.resolve(path.dirname(fromFile), spec) + ".d.ts";
  if (spec.startsWith("@kubernetes-models/apimachinery/"))
    return path.join(APIMACHINERY, spec.slice("@kubernetes-models/apimachinery/".length)) + ".d.ts";
  return null; // @kubernetes-models/base etc.: not a resource type
}

// Parses the interface declared in file: its properties, and where each
// imported type name comes from. Returns null for type aliases (scalars such
// as IntOrString and Quantity) and for anything it cannot find.
function parseDecl(file) {
  if (typeCache.has(file)) return typeCache.get(file);
  let result = null;
  if (file && fs.existsSync(file)) {
    const src = fs.readFileSync(file, "utf8");
    const imports = new Map();
    for (const m of src.matchAll(/import \{ ([^}]+) \} from "([^"]+)";/g))
      for (const n of m[1].split(",")) imports.set(n.trim(), m[2]);
    const start = src.search(/export interface I\w+(?: extends [\w, ]+)? \{/);
    if (start >= 0) {
      const props = new Map();
      const body = src.slice(start, src.indexOf("\n}", start));
      for (const m of body.matchAll(/^ {4}"([^"]+)"\??: (.*)$/gm)) props.set(m[1], m[2].replace(/;$/, ""));
      result = { file, props, imports };
    }
  }
  typeCache.set(file, result);
  return result;
}

function typeOf(decl, text) {
  // text: "IIoK8s...", "Array<IIoK8s...>", "string", "{" (map), literal unions...
  const arr = /^Array<(\w+)>$/.exec(text);
  const name = arr ? arr[1] : /^\w+$/.test(text) ? text : null;
  if (!name || !decl.imports.has(name)) return null;
  const d = parseDecl(resolveImport(decl.file, decl.imports.get(name)));
  return d ? { decl: d, array: !!arr } : null;
}

function unknownFields(obj, decl, where, out) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return;
  for (const [k, v] of Object.entries(obj)) {
    if (!decl.props.has(k)) {
      out.push(`${where}.${k}: unknown field`);
      continue;
    }
    const t = typeOf(decl, decl.props.get(k));
    if (!t) continue;
    if (t.array && Array.isArray(v)) v.forEach((e, i) => unknownFields(e, t.decl, `${where}.${k}[${i}]`, out));
    else if (!t.array) unknownFields(v, t.decl, `${where}.${k}`, out);
  }
}

// ---- main -------------------------------------------------------------------------------

function main() {
  const input = process.argv[2];
  if (!input) {
    console.error("usage: validate.js <objects.json>");
    process.exit(2);
  }
  const items = JSON.parse(fs.readFileSync(input, "utf8"));
  let passed = 0;
  let failed = 0;
  for (const { source, object } of items) {
    const label = `${object.kind}/${(object.metadata || {}).name} (${source})`;
    const problems = [];
    const Model = loadModel(object);
    if (!Model) {
      problems.push(`no schema for ${object.apiVersion} ${object.kind}`);
    } else {
      try {
        new Model(object).validate();
      } catch (e) {
        problems.push(String(e.message || e).trim());
      }
      const decl = parseDecl(path.join(MODELS, modelDir(object.apiVersion), object.kind + ".d.ts"));
      if (decl) unknownFields(object, decl, object.kind, problems);
      else problems.push(`no type declaration for ${object.apiVersion} ${object.kind}`);
    }
    if (problems.length === 0) {
      passed++;
      console.log(`   ok    ${label}`);
    } else {
      failed++;
      console.log(`   FAIL  ${label}`);
      for (const p of problems) console.log(`         ${p.split("\n").join("\n         ")}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main();
