/*
 * xlu-oracle: reads an xl config with Xen's own libxlutil and prints what
 * libxlu made of it, so config/xl's tests can compare our parser with the
 * real one (Debian's libxen-dev). Strings are printed as hex to avoid any
 * quoting question. Usage: xlu-oracle CONFIG KEY...
 *
 *   ok | error <errno>
 *   val KEY = "<hex>" | [v, v, ...]     (absent keys print nothing)
 *   long KEY <n> | long KEY err
 *   disk I ok target=<hex> format=<name> vdev=<hex> rw=<0|1> cdrom=<0|1>
 *          script=<hex> backend=<hex> spec=<name>
 *   disk I err
 */
#include <stdio.h>
#include <string.h>
#include <libxl.h>
#include <libxlutil.h>

static void hex(const char *s) {
    putchar('"');
    if (s) for (; *s; s++) printf("%02x", (unsigned char)*s);
    putchar('"');
}

static void value(const XLU_Config *cfg, XLU_ConfigValue *v) {
    if (xlu_cfg_value_type(v) == XLU_STRING) {
        char *s;
        xlu_cfg_value_get_string(cfg, v, &s, 1);
        hex(s);
        return;
    }
    XLU_ConfigList *l;
    xlu_cfg_value_get_list(cfg, v, &l, 1);
    putchar('[');
    for (int i = 0;; i++) {
        XLU_ConfigValue *e = xlu_cfg_get_listitem2(l, i);
        if (!e) break;
        if (i) printf(", ");
        value(cfg, e);
    }
    putchar(']');
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: xlu-oracle CONFIG KEY...\n"); return 2; }
    FILE *devnull = fopen("/dev/null", "w");
    XLU_Config *cfg = xlu_cfg_init(devnull, argv[1]);
    int e = xlu_cfg_readfile(cfg, argv[1]);
    if (e) { printf("error %d\n", e); return 0; }
    printf("ok\n");
    for (int k = 2; k < argc; k++) {
        const char *key = argv[k];
        XLU_ConfigList *list;
        int n;
        const char *s;
        if (!xlu_cfg_get_list(cfg, key, &list, &n, 1)) {
            printf("val %s = [", key);
            for (int i = 0; i < n; i++) {
                if (i) printf(", ");
                value(cfg, xlu_cfg_get_listitem2(list, i));
            }
            printf("]\n");
            if (!strcmp(key, "disk")) {
                for (int i = 0; i < n; i++) {
                    const char *spec = xlu_cfg_get_listitem(list, i);
                    if (!spec) break;
                    libxl_device_disk d;
                    libxl_device_disk_init(&d);
                    if (xlu_disk_parse(cfg, 1, &spec, &d)) {
                        printf("disk %d err\n", i);
                    } else {
                        printf("disk %d ok target=", i); hex(d.pdev_path);
                        printf(" format=%s vdev=", libxl_disk_format_to_string(d.format));
                        hex(d.vdev);
                        printf(" rw=%d cdrom=%d script=", d.readwrite, d.is_cdrom);
                        hex(d.script);
                        printf(" backend="); hex(d.backend_domname);
                        printf(" spec=%s\n", libxl_disk_specification_to_string(d.specification));
                    }
                    libxl_device_disk_dispose(&d);
                }
            }
        } else if (!xlu_cfg_get_string(cfg, key, &s, 1)) {
            printf("val %s = ", key); hex(s); printf("\n");
            long l;
            if (!xlu_cfg_get_long(cfg, key, &l, 1)) printf("long %s %ld\n", key, l);
            else printf("long %s err\n", key);
        }
    }
    return 0;
}
