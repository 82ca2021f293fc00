// Types of ComfyUI's frontend shim /scripts/app.js, for `tsc -p tests/web` only.
// web/x.js is served as /extensions/<pack>/x.js and imports "../../scripts/app.js"; tsconfig's rootDirs
// puts web/ at shims/extensions/<pack>/ so that import resolves here.
import type { ComfyApp } from "@comfyorg/comfyui-frontend-types";

export declare const app: ComfyApp;
