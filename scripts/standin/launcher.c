/*
 * Stand-in for a `deno compile` executable, for machines where `deno compile` cannot download
 * the runtime it embeds (see the Containerfile and the README): runs the unbundled entry point
 * with the image's deno under the permission and V8 flags of scripts/permissions.ts, which
 * scripts/standin.ts writes into standin_argv.h. Static, so it needs nothing from the image.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "standin_argv.h"

int main(int argc, char **argv) {
  size_t fixed = sizeof STANDIN_ARGV / sizeof STANDIN_ARGV[0];
  char **args = calloc(fixed + (size_t)argc, sizeof *args);
  if (args == NULL) {
    perror("iprule stand-in: calloc");
    return 127;
  }
  for (size_t i = 0; i < fixed; i++) args[i] = (char *)STANDIN_ARGV[i];
  for (int i = 1; i < argc; i++) args[fixed + (size_t)i - 1] = argv[i];
  /* The npm cache and transpiled sources baked into the image, read-only like the image. */
  setenv("DENO_DIR", STANDIN_DENO_DIR, 1);
  setenv("DENO_NO_UPDATE_CHECK", "1", 1);
  execv(args[0], args);
  perror("iprule stand-in: exec " STANDIN_DENO);
  return 127;
}
