#!/bin/sh
# scanstation: make the Pi a USB boot keyboard (configfs HID gadget) for keyboard_gadget outputs.
#
#   sudo firmware-config/usb-gadget.sh up       create the gadget, bind it, open /dev/hidg0 to the daemon
#   sudo firmware-config/usb-gadget.sh down     unbind and remove it
#   firmware-config/usb-gadget.sh status        show what is set up
#
# Needs the USB port in device mode (dtoverlay=dwc2,dr_mode=peripheral in config.txt, then a
# reboot) and the cable in the Pi's OTG port: the USB-C port of a Pi 4 or Pi 5, the "USB" (not
# "PWR") micro-USB port of a Zero 2 W. See firmware-config/usb-gadget.md.
#
# Environment (all optional):
#   SCANSTATION_GADGET_NAME     configfs name                    (scanstation)
#   SCANSTATION_GADGET_VID/PID  USB ids the host sees            (0x1d6b / 0x0104: Linux Foundation,
#                               multifunction composite gadget; use your own ids in production)
#   SCANSTATION_GADGET_SERIAL   serial number the host sees      (the Pi's serial number)
#   SCANSTATION_GADGET_GROUP    group given /dev/hidgN, mode 0660 (scanstation)
#   SCANSTATION_GADGET_UDC      the controller to bind           (the first in /sys/class/udc)
set -eu

NAME=${SCANSTATION_GADGET_NAME:-scanstation}
VID=${SCANSTATION_GADGET_VID:-0x1d6b}
PID=${SCANSTATION_GADGET_PID:-0x0104}
GROUP=${SCANSTATION_GADGET_GROUP:-scanstation}
CONFIGFS=/sys/kernel/config
GADGET=$CONFIGFS/usb_gadget/$NAME

# The boot keyboard report descriptor of the kernel's gadget_hid documentation: 8-byte input
# reports (modifiers, reserved, six keys) and a 1-byte LED output report (Num/Caps/Scroll Lock),
# which scanstation reads to type letters in the right case when the till has Caps Lock on.
REPORT_DESC='\005\001\011\006\241\001\005\007\031\340\051\347\025\000\045\001\165\001\225\010\201\002\225\001\165\010\201\003\225\005\165\001\005\010\031\001\051\005\221\002\225\001\165\003\221\003\225\006\165\010\025\000\045\145\005\007\031\000\051\145\201\000\300'

die() {
    echo "usb-gadget.sh: $*" >&2
    exit 1
}

pi_serial() {
    if [ -r /proc/device-tree/serial-number ]; then
        tr -d '\000' </proc/device-tree/serial-number
    else
        sed -n 's/^Serial[[:space:]]*: *//p' /proc/cpuinfo | head -n 1
    fi
}

up() {
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
    modprobe libcomposite || die "no libcomposite module: is this a Raspberry Pi OS kernel?"
    mountpoint -q "$CONFIGFS" || mount -t configfs none "$CONFIGFS"
    if [ -d "$GADGET" ]; then
        echo "gadget $NAME is already set up"
    else
        mkdir -p "$GADGET"
        cd "$GADGET"
        echo "$VID" >idVendor
        echo "$PID" >idProduct
        echo 0x0100 >bcdDevice
        echo 0x0200 >bcdUSB
        mkdir -p strings/0x409
        echo "${SCANSTATION_GADGET_SERIAL:-$(pi_serial)}" >strings/0x409/serialnumber
        echo "scanstation" >strings/0x409/manufacturer
        echo "scanstation barcode keyboard" >strings/0x409/product

        mkdir -p functions/hid.keyboard
        echo 1 >functions/hid.keyboard/protocol      # keyboard
        echo 1 >functions/hid.keyboard/subclass      # boot interface: BIOS and POS firmware too
        echo 8 >functions/hid.keyboard/report_length
        # shellcheck disable=SC2059 # the octal escapes are meant to be read as a format
        printf "$REPORT_DESC" >functions/hid.keyboard/report_desc

        mkdir -p configs/c.1/strings/0x409
        echo "barcode keyboard" >configs/c.1/strings/0x409/configuration
        echo 0x80 >configs/c.1/bmAttributes          # bus-powered
        echo 100 >configs/c.1/MaxPower               # mA asked of the host
        ln -s functions/hid.keyboard configs/c.1/
    fi

    cd "$GADGET"
    if [ -z "$(cat UDC)" ]; then
        udc=${SCANSTATION_GADGET_UDC:-$(find /sys/class/udc -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | head -n 1)}
        [ -n "$udc" ] || die "no USB device controller in /sys/class/udc: add dtoverlay=dwc2,dr_mode=peripheral to config.txt and reboot"
        echo "$udc" >UDC
    fi

    # /dev/hidgN appears once the function is bound; hand it to the daemon's group.
    minor=$(cut -d: -f2 functions/hid.keyboard/dev)
    device=/dev/hidg$minor
    tries=0
    while [ ! -e "$device" ] && [ $tries -lt 50 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    [ -e "$device" ] || die "$device did not appear"
    if getent group "$GROUP" >/dev/null; then
        chgrp "$GROUP" "$device"
        chmod 0660 "$device"
    else
        echo "usb-gadget.sh: no group $GROUP; $device stays root-only" >&2
    fi
    echo "keyboard gadget up: $device (set device = \"$device\" in the keyboard_gadget output)"
}

down() {
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
    [ -d "$GADGET" ] || { echo "gadget $NAME is not set up"; return 0; }
    cd "$GADGET"
    [ -z "$(cat UDC)" ] || echo "" >UDC
    rm -f configs/c.1/hid.keyboard
    rmdir configs/c.1/strings/0x409 configs/c.1 functions/hid.keyboard strings/0x409
    cd ..
    rmdir "$GADGET"
    echo "keyboard gadget $NAME removed"
}

status() {
    if [ ! -d "$GADGET" ]; then
        echo "gadget $NAME: not set up"
        [ -n "$(find /sys/class/udc -mindepth 1 -maxdepth 1 2>/dev/null)" ] ||
            echo "no USB device controller: dtoverlay=dwc2,dr_mode=peripheral missing?"
        return 0
    fi
    udc=$(cat "$GADGET/UDC")
    echo "gadget $NAME: ids $(cat "$GADGET/idVendor"):$(cat "$GADGET/idProduct"), bound to ${udc:-nothing}"
    if [ -n "$udc" ] && [ -r "/sys/class/udc/$udc/state" ]; then
        echo "host link: $(cat "/sys/class/udc/$udc/state")   (configured = the host took the keyboard)"
    fi
    minor=$(cut -d: -f2 "$GADGET/functions/hid.keyboard/dev")
    ls -l "/dev/hidg$minor" 2>/dev/null || echo "/dev/hidg$minor: missing"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
